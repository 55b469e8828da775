"""milkprice: monthly forecasts of retail milk prices in Mexico (SNIIM)."""

__version__ = "0.1.0"
