"""Getting events in: the service (``log_audit`` and helpers), request context, request hooks, the
background writer and its spool, the insert statements and the error rollup they keep."""
