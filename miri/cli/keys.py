"""``miri keys show``: the keys every host of a shared database must be started with."""

from __future__ import annotations

import typer

from miri.cli.common import DataDir, Json, console, emit, settings_for
from miri.infra import secrets

app = typer.Typer(help="The shop's signing and data keys.")


@app.command("show")
def show(data_dir: DataDir = None, as_json: Json = False) -> None:
    """Print the JWT, data and payment-webhook keys as environment lines, to start more hosts on one database.

    Keep the output secret: anyone with the JWT key can sign tokens, and the data key decrypts
    every buyer's personal data.

    Example: miri keys show --data-dir ./shop-data > /run/secrets/miri.env
    """
    settings = settings_for(data_dir)
    values = {
        "MIRI_JWT_SECRET": secrets.jwt_secret(settings),
        "MIRI_DATA_KEY": secrets.data_key(settings),
        "MIRI_PAYMENT_WEBHOOK_SECRET": secrets.payment_webhook_secret(settings),
    }
    if as_json:
        emit(values, as_json, str)
        return
    for name, value in values.items():  # one whole line each, never wrapped: an env file
        console.print(f"{name}={value}", soft_wrap=True, markup=False, highlight=False)
