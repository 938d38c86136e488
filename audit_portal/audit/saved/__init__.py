"""Saved views: a name for a query and filters of the viewer or the error dashboard, personal or shared."""
