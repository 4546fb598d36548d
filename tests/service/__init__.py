"""The service as a whole: settings, schema, admin API, OpenAPI, layers, request guards."""
