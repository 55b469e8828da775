"""``python -m milkprice_cli ...``: the same command line as the ``milkprice`` console script."""

from milkprice_cli.app import app

app()
