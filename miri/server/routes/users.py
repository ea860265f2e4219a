"""Users and sign-in (API.md)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import Annotated, Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, StrictStr, field_validator, model_validator

from miri.domain.users.service import Profile
from miri.server import clients
from miri.server.api import Api, ok
from miri.server.keys import SHOP
from miri.server.models import (
    Address,
    Body,
    Email,
    Paging,
    Password,
    PhoneNumber,
    UserName,
    at_least_one,
    order_item,
    page_of,
    page_out,
    schema_of,
)
from miri.server.routes.goods import goods_rows
from miri.server.routes.wishlist import wish_rows

log = logging.getLogger(__name__)
api = Api("users")
MY_PAGE_SIZE = 10  # items in each part of "my page"


class VerifyEmailBody(Body):
    email: Email


class SignUpBody(Body):
    emailVerificationToken: StrictStr = Field(min_length=36, max_length=36)
    email: Email | None = None
    userName: UserName
    password: Password
    phoneNumber: PhoneNumber
    address: Address


class LoginBody(Body):
    email: StrictStr = Field(min_length=1, max_length=100)
    password: StrictStr = Field(min_length=1, max_length=100)


class ProfilePatch(Body):
    model_config = ConfigDict(json_schema_extra=at_least_one)

    phoneNumber: Annotated[PhoneNumber | None, schema_of(PhoneNumber)] = None
    address: Annotated[Address | None, schema_of(Address)] = None

    @field_validator("phoneNumber", "address")
    @classmethod
    def not_null(cls, value: str | None) -> str:
        if value is None:  # only an explicit null gets here (defaults are not validated)
            raise ValueError("cannot be null; leave the field out to keep it")
        return value

    @model_validator(mode="after")
    def needs_a_field(self) -> ProfilePatch:
        if self.phoneNumber is None and self.address is None:
            raise ValueError("give phoneNumber, address or both")
        return self


class ChangePasswordBody(Body):
    currentPassword: StrictStr = Field(min_length=1, max_length=100)
    newPassword: Password


class ResetBody(Body):
    email: StrictStr = Field(min_length=1, max_length=100)


class ResetConfirmBody(Body):
    token: StrictStr = Field(min_length=1, max_length=100)
    newPassword: Password


class UserId(BaseModel):
    userId: int


class TokenOut(BaseModel):
    accessToken: str
    tokenType: str
    expiresIn: int


class ProfileOut(BaseModel):
    userId: int
    email: str
    userName: str
    phoneNumber: str
    address: str
    role: str


def profile_out(profile: Profile) -> dict[str, Any]:
    """A profile as the API shows it (the CLI's ``--json`` shows the same)."""
    return {
        "userId": profile.user_id,
        "email": profile.email,
        "userName": profile.user_name,
        "phoneNumber": profile.phone_number,
        "address": profile.address,
        "role": profile.role,
    }


class MyPage(ProfileOut):
    registeredGoods: Any = None
    wishList: Any = None
    orders: Any = None


@api.route(
    "POST",
    "/api/verify-email",
    summary="Mail a one-time sign-up token",
    body=VerifyEmailBody,
    errors=("EMAIL_TAKEN", "RATE_LIMITED", "UNAVAILABLE"),
)
async def verify_email(request: web.Request, body: VerifyEmailBody) -> web.Response:
    await request.app[SHOP].users.request_verification(body.email, clients.of(request))
    return ok(None, msg="a verification token was mailed; it is valid for 30 minutes")


@api.route(
    "POST",
    "/api/users",
    summary="Sign up with a mailed token",
    body=SignUpBody,
    response=UserId,
    status=201,
    errors=("EMAIL_TAKEN",),
)
async def sign_up(request: web.Request, body: SignUpBody) -> web.Response:
    user_id = await request.app[SHOP].users.sign_up(
        token=body.emailVerificationToken,
        email=body.email,
        user_name=body.userName,
        password=body.password,
        phone_number=body.phoneNumber,
        address=body.address,
    )
    return ok({"userId": user_id}, status=201, msg="signed up")


@api.route(
    "POST",
    "/api/login",
    summary="Log in for an access token",
    body=LoginBody,
    response=TokenOut,
    errors=("UNAUTHENTICATED", "RATE_LIMITED"),
)
async def login(request: web.Request, body: LoginBody) -> web.Response:
    result = await request.app[SHOP].users.login(body.email, body.password, clients.of(request))
    data = {
        "accessToken": result.access_token,
        "tokenType": "Bearer",
        "expiresIn": result.expires_in,
    }
    return ok(data, msg="logged in", headers={"Authorization": f"Bearer {result.access_token}"})


@api.route("POST", "/api/auth/logout", summary="Revoke the token used for this request")
async def logout(request: web.Request) -> web.Response:
    await request.app[SHOP].users.logout(request["claims"])
    return ok(None, msg="logged out")


async def _part(name: str, part: Awaitable[Any]) -> Any:
    """One part of "my page"; a failing module gives null instead of failing the page."""
    try:
        return await part
    except Exception:  # noqa: BLE001 - the page answers with what it has
        log.exception("my page: %s failed", name)
        return None


@api.route(
    "GET",
    "/api/auth/users",
    summary="My page: profile, my goods, wishlist, orders",
    response=MyPage,
)
async def my_page(request: web.Request) -> web.Response:
    shop = request.app[SHOP]
    user_id = request["claims"].user_id
    first = Paging(page=0, size=MY_PAGE_SIZE)

    async def registered_goods() -> dict[str, Any]:
        listed, total = await shop.goods.listing(0, MY_PAGE_SIZE, seller_id=user_id)
        return page_of(goods_rows(listed, shop.goods.zone), first, total)

    async def wish_list() -> dict[str, Any]:
        items, total = await shop.wishlist.page(user_id, 0, MY_PAGE_SIZE)
        return page_of(wish_rows(items), first, total)

    async def orders_part() -> dict[str, Any]:
        page = await shop.order_views.list(user_id=user_id, page=0, size=MY_PAGE_SIZE)
        return page_out(page, order_item)

    profile, goods, wishlist, orders = await asyncio.gather(
        shop.users.profile(user_id),
        _part("registeredGoods", registered_goods()),
        _part("wishList", wish_list()),
        _part("orders", orders_part()),
    )
    return ok(
        {**profile_out(profile), "registeredGoods": goods, "wishList": wishlist, "orders": orders}
    )


@api.route(
    "PATCH",
    "/api/auth/users",
    summary="Change phone number and/or address",
    body=ProfilePatch,
    response=ProfileOut,
)
async def update_profile(request: web.Request, body: ProfilePatch) -> web.Response:
    profile = await request.app[SHOP].users.update_profile(
        request["claims"].user_id, phone_number=body.phoneNumber, address=body.address
    )
    return ok(profile_out(profile), msg="profile updated")


@api.route(
    "PATCH",
    "/api/auth/users/change-password",
    summary="Change the password",
    body=ChangePasswordBody,
)
async def change_password(request: web.Request, body: ChangePasswordBody) -> web.Response:
    await request.app[SHOP].users.change_password(
        request["claims"].user_id, body.currentPassword, body.newPassword
    )
    return ok(None, msg="password changed; log in again")


@api.route(
    "POST",
    "/api/password-reset",
    summary="Mail a one-time password-reset token (the same answer for any email)",
    body=ResetBody,
    errors=("RATE_LIMITED",),
)
async def password_reset(request: web.Request, body: ResetBody) -> web.Response:
    await request.app[SHOP].users.request_reset(body.email, clients.of(request))
    return ok(
        None,
        msg="if an account has this email, a reset code was mailed; it is valid for 30 minutes",
    )


@api.route(
    "POST",
    "/api/password-reset/confirm",
    summary="Set a new password with a mailed reset token",
    body=ResetConfirmBody,
)
async def password_reset_confirm(request: web.Request, body: ResetConfirmBody) -> web.Response:
    await request.app[SHOP].users.reset_password(body.token, body.newPassword)
    return ok(None, msg="password reset; log in with the new password")
