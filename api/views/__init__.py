"""The API's handlers, one module per resource."""
