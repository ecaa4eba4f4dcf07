"""One module per pass. Each defines a frozen pydantic config and one `apply` function."""
