"""The signed digests and their public key, under /api/v1/audit-logs/digests (admins only)."""

from __future__ import annotations

from flask import abort
from flask.views import MethodView
from flask_smorest import Blueprint
from marshmallow import RAISE, Schema, fields, validate

from ...rest import documented_errors, envelope, ok, require_admin
from ..integrity.digests import list_digests, published_keys
from ..integrity.signing import KeyFileError
from ..read.schemas import MAX_INT64

blp = Blueprint(
    "Audit Digests", __name__, url_prefix="/api/v1/audit-logs/digests",
    description="Digests of the public hash chain, signed with Ed25519 by the sealer process, and the public key "
                "that checks them (docs/compliance.md, 'Signed digests'). **Admins only.**",
)
blp.before_request(require_admin)
SECURITY = [{"bearerAuth": []}, {"sessionCookie": []}]


class DigestPageArgsSchema(Schema):
    skip = fields.Integer(load_default=0, validate=validate.Range(min=0, max=MAX_INT64,
                                                                  error="Must be a whole number, 0 or more."),
                          metadata={"description": "How many digests to skip (default 0)."})
    limit = fields.Integer(load_default=50, validate=validate.Range(min=1, max=500,
                                                                    error="Must be a whole number from {min} to {max}."),
                           metadata={"description": "Page size (default 50, at most 500)."})


class PurgeRecordSchema(Schema):
    id = fields.Integer()
    at = fields.String()
    cutoffs = fields.Dict()
    holds = fields.List(fields.List(fields.String()))
    head_seq = fields.Integer()
    count = fields.Integer()


class DigestSchema(Schema):
    id = fields.Integer(metadata={"example": 3})
    version = fields.Integer(metadata={"example": 1})
    first_seq = fields.Integer(metadata={"description": "The first link of the chain it covers.", "example": 2001})
    last_seq = fields.Integer(metadata={"description": "The last link it covers.", "example": 3000})
    count = fields.Integer(metadata={"example": 1000})
    prev_head = fields.String(metadata={"description": "The public chain's hash at first_seq - 1."})
    head = fields.String(metadata={"description": "The public chain's hash at last_seq."})
    from_ = fields.String(data_key="from", attribute="from", allow_none=True,
                          metadata={"description": "The oldest event's time."})
    to = fields.String(allow_none=True, metadata={"description": "The newest event's time."})
    created_at = fields.String()
    previous_signature = fields.String(allow_none=True, metadata={"description": "The previous digest's signature."})
    key_fingerprint = fields.String(metadata={"description": "SHA-256 of the signing key's SubjectPublicKeyInfo."})
    next_key_fingerprint = fields.String(allow_none=True, metadata={"description": "Set by a key rotation: the key "
                                                                                   "that signs the next digests."})
    purges = fields.List(fields.Nested(PurgeRecordSchema))
    body = fields.String(metadata={"description": "The exact text that was signed (canonical JSON)."})
    signature = fields.String(metadata={"description": "Ed25519 signature of `body`, base64."})


class DigestListSchema(Schema):
    items = fields.List(fields.Nested(DigestSchema), metadata={"description": "Digests, newest first."})
    total = fields.Integer()
    skip = fields.Integer()
    limit = fields.Integer()


class PublicKeySchema(Schema):
    fingerprint = fields.String(metadata={"description": "SHA-256 of the key's SubjectPublicKeyInfo (DER), hex."})
    pem = fields.String(metadata={"description": "The key, SubjectPublicKeyInfo PEM."})
    keys = fields.List(fields.Dict(), metadata={"description": "Every key of AUDIT_PUBLIC_KEY_FILE (after a "
                                                               "rotation, older ones too), each with its fingerprint."})


@blp.route("/")
class DigestList(MethodView):
    @blp.doc(security=SECURITY)
    @documented_errors(blp, 401, 403, 422)
    @blp.arguments(DigestPageArgsSchema, location="query", unknown=RAISE)
    @blp.response(200, envelope(DigestListSchema, "DigestListEnvelope"))
    def get(self, args):
        """List signed digests

        Newest first. Each carries its body's fields, the exact signed text (`body`) and its `signature`: check it
        with the public key (`/api/v1/audit-logs/digests/public-key`).

        ```
        curl -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:5000/api/v1/audit-logs/digests/?limit=10"
        ```
        """
        return ok(list_digests(args["skip"], args["limit"]))


@blp.route("/public-key")
class DigestPublicKey(MethodView):
    @blp.doc(security=SECURITY)
    @documented_errors(blp, 401, 403, 404)
    @blp.response(200, envelope(PublicKeySchema, "DigestPublicKeyEnvelope"))
    def get(self):
        """Get the digests' public key

        The key of AUDIT_PUBLIC_KEY_FILE (the last one when the file lists several after a rotation) with its
        fingerprint, and every key in `keys`. 404 when AUDIT_PUBLIC_KEY_FILE is not configured.

        ```
        curl -H "Authorization: Bearer $TOKEN" http://127.0.0.1:5000/api/v1/audit-logs/digests/public-key
        ```
        """
        try:
            keys = published_keys()
        except KeyFileError as exc:
            abort(500, description=f"AUDIT_PUBLIC_KEY_FILE cannot be read: {exc}")
        if keys is None:
            abort(404, description="No public key is configured: set AUDIT_PUBLIC_KEY_FILE to the sealer's public key "
                                   "(audit-signing-key.pub.pem).")
        return ok({**keys[-1], "keys": keys})
