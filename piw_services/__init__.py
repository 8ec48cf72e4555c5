"""piw: a wheel-building index for Raspberry Pi, as nameko services on RabbitMQ."""

__version__ = "0.1.0"
