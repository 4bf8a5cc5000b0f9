"""notifyflow: real-time notifications as Bytewax dataflows."""
