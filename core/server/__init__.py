"""The gRPC server, its interceptor, health, reflection, metrics, the HTTP app and workers."""
