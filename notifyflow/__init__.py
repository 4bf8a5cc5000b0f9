"""notifyflow: real-time notifications as Bytewax dataflows."""

from notifyflow import logs

# Every process (flows, gateway, CLI) imports this package before it logs anything.
logs.install()
