"""Storage: schema and migrations, the background writer, and read queries."""
