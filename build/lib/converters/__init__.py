"""packager's own plugins: one module per framework or format, registered through entry points."""
