"""InfluxDB: line protocol, the HTTP client (1.x and 2.x/3.x), the writer and its spool."""
