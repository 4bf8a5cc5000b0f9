"""The real-time gateway: WebSocket and SSE fan-out, the notification-center API, preferences and devices."""
