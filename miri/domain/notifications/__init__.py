"""Mail a buyer expects: order confirmed, shipped, refunded, and the password-reset token."""
