"""Getting events out: the one query module (filters, order, paging, counts), the input schemas, the error
dashboard's numbers and the export."""
