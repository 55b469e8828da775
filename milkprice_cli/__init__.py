"""The ``milkprice`` console script, above both the core (:mod:`milkprice`) and the shell.

One Typer app (:mod:`milkprice_cli.app`) with sub-apps by subject. Nothing imports this package:
it is the top of the house.
"""
