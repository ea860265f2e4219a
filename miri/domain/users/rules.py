"""Field rules kept from the original shop; each raises ValueError with the message a client sees.

The HTTP models and the CLI both call these, so a rule lives in one place.
"""

from __future__ import annotations

import re

# Used with fullmatch: ``$`` would also accept a trailing newline.
# The patterns are also the OpenAPI document's (miri/server/models.py), anchored there.
EMAIL_PATTERN = r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"
PASSWORD_PATTERN = r"""[A-Za-z0-9!@#$%^&*()\-_=+\[\]{}|;:'",.<>/?]{10,20}"""
PHONE_PATTERN = r"[0-9]{3}-[0-9]{4}-[0-9]{4}"
HANGUL = "가-힣ㄱ-ㅎㅏ-ㅣ"
_EMAIL = re.compile(EMAIL_PATTERN)
_PASSWORD = re.compile(PASSWORD_PATTERN)
_PHONE = re.compile(PHONE_PATTERN)
_ADDRESS = re.compile(rf"[A-Za-z{HANGUL}0-9 \-_.,#]{{1,50}}")
_USER_NAME = re.compile(rf"[A-Za-z{HANGUL} ]{{1,20}}")


def email(value: str) -> str:
    value = value.strip().lower()
    if not 2 <= len(value) <= 30:
        raise ValueError("email must be 2 to 30 characters")
    if not _EMAIL.fullmatch(value):
        raise ValueError("email is not a valid address")
    return value


def password(value: str) -> str:
    if not 10 <= len(value) <= 20:
        raise ValueError("password must be 10 to 20 characters")
    if not _PASSWORD.fullmatch(value):
        raise ValueError("password may use only letters, digits and !@#$%^&*()-_=+[]{}|;:'\",.<>/?")
    return value


def phone_number(value: str) -> str:
    if not _PHONE.fullmatch(value):
        raise ValueError("phoneNumber must look like 010-1234-5678")
    return value


def address(value: str) -> str:
    if not _ADDRESS.fullmatch(value) or not value.strip():
        raise ValueError("address must be 1 to 50 letters, digits, spaces or -_.,#")
    return value


def user_name(value: str) -> str:
    if not _USER_NAME.fullmatch(value) or not value.strip():
        raise ValueError("userName must be 1 to 20 letters or spaces")
    return value
