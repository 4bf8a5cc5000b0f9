"""Channel sinks: delivery to providers with claims, batching, retries, circuit breakers and fallback."""
