"""``miri user ...`` and ``miri token``: accounts from the operator's side."""

from __future__ import annotations

from typing import Annotated

import typer

from miri.cli.common import (
    DataDir,
    Json,
    RedisUrl,
    emit,
    fields,
    page_json,
    run,
    settings_for,
    table,
)
from miri.server.routes.users import profile_out
from miri.shop import Shop

app = typer.Typer(help="Manage accounts.", no_args_is_help=True)


@app.command("add")
def add(
    email: Annotated[str, typer.Option(help="Login email.")],
    password: Annotated[str, typer.Option(help="10-20 characters.", prompt=True, hide_input=True)],
    name: Annotated[str, typer.Option(help="Display name (letters and spaces).")],
    phone: Annotated[str, typer.Option(help="NNN-NNNN-NNNN.")],
    address: Annotated[str, typer.Option(help="Shipping address.")],
    admin: Annotated[bool, typer.Option("--admin", help="Give the ADMIN role.")] = False,
    data_dir: DataDir = None,
    redis_url: RedisUrl = None,
    as_json: Json = False,
) -> None:
    """Create an account without a verification mail; prints the user id.

    Example: miri user add --email kim@example.com --name "Kim" --phone 010-1234-5678
    --address "Seoul 1" --password 'correct-horse1' --admin
    """
    settings = settings_for(data_dir, redis_url=redis_url)
    user_id = run(
        lambda shop: shop.users.add_user(
            email=email,
            password=password,
            user_name=name,
            phone_number=phone,
            address=address,
            role="ADMIN" if admin else "USER",
        ),
        settings,
    )
    emit({"userId": user_id}, as_json, lambda d: d["userId"])


@app.command("list")
def list_users(
    page: Annotated[int, typer.Option(min=0)] = 0,
    size: Annotated[int, typer.Option(min=1, max=1000)] = 50,
    data_dir: DataDir = None,
    redis_url: RedisUrl = None,
    as_json: Json = False,
) -> None:
    """List accounts, newest first.

    Example: miri user list --size 20 --json
    """
    settings = settings_for(data_dir, redis_url=redis_url)
    found = run(lambda shop: shop.users.list(page, size), settings)
    emit(
        page_json(found, profile_out),
        as_json,
        lambda d: table(
            f"Users ({d['totalItems']})",
            ["id", "email", "name", "phone", "role"],
            [
                (u["userId"], u["email"], u["userName"], u["phoneNumber"], u["role"])
                for u in d["items"]
            ],
        ),
    )


@app.command("show")
def show(
    who: Annotated[str, typer.Argument(help="Email or user id.")],
    data_dir: DataDir = None,
    redis_url: RedisUrl = None,
    as_json: Json = False,
) -> None:
    """Show one account.

    Example: miri user show kim@example.com
    """
    settings = settings_for(data_dir, redis_url=redis_url)
    profile = run(lambda shop: shop.users.find(who), settings)
    emit(
        profile_out(profile),
        as_json,
        lambda d: fields(f"User {d['userId']}", d),
    )


def token(
    who: Annotated[str, typer.Argument(help="Email or user id.")],
    data_dir: DataDir = None,
    redis_url: RedisUrl = None,
    as_json: Json = False,
) -> None:
    """Print a fresh access token for an account (for operators and benchmarks).

    Example: TOKEN=$(miri token kim@example.com)
    """
    settings = settings_for(data_dir, redis_url=redis_url)

    async def issue(shop: Shop) -> dict[str, object]:
        profile = await shop.users.find(who)
        token = shop.users.issue_token(profile.user_id, profile.role)
        return {
            "accessToken": token,
            "tokenType": "Bearer",
            "userId": profile.user_id,
            "role": profile.role,
            "expiresIn": shop.settings.token_ttl,
        }

    issued = run(issue, settings)
    if as_json:
        emit(issued, True, str)
    else:
        # Plain, so $(miri token ...) captures exactly the token.
        print(issued["accessToken"])
