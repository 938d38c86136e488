"""What an audit event is: the vocabulary (enums), the tables, building a safe row, redaction, what is
known about exceptions, how an event is presented, and who it names. Imports nothing else of the audit package."""
