"""digitrec: recognise handwritten digits and whole numbers, on an ordinary CPU."""

__version__ = "0.1.0"
