"""Versioned schema. Append a migration; never edit one that has shipped.

Times are stored as UTC epoch seconds (REAL). Personal data is stored only as AES-GCM
ciphertext (``*_enc``) with a keyed HMAC (``email_index``) for lookups.
"""

MIGRATIONS: list[str] = [
    # 1: every module's tables. Each block is owned by the module named in its comment.
    """
    -- users
    CREATE TABLE users (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        email_index BLOB NOT NULL UNIQUE,
        email_enc BLOB NOT NULL,
        name_enc BLOB NOT NULL,
        phone_enc BLOB NOT NULL,
        address_enc BLOB NOT NULL,
        password_hash TEXT NOT NULL,
        role TEXT NOT NULL DEFAULT 'USER' CHECK (role IN ('USER', 'ADMIN')),
        tokens_valid_after REAL NOT NULL DEFAULT 0,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL
    );
    CREATE TABLE email_verifications (
        token_hash TEXT PRIMARY KEY,
        email_index BLOB NOT NULL,
        email_enc BLOB NOT NULL,
        expires_at REAL NOT NULL,
        used_at REAL,
        created_at REAL NOT NULL
    );
    CREATE INDEX email_verifications_email ON email_verifications (email_index);
    -- goods
    CREATE TABLE goods (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        seller_id INTEGER NOT NULL REFERENCES users (id),
        name TEXT NOT NULL,
        description TEXT NOT NULL,
        price INTEGER NOT NULL CHECK (price >= 0),
        category TEXT NOT NULL CHECK (category IN ('FASHION', 'BEAUTY', 'ETC')),
        reservation_start REAL,
        per_buyer_limit INTEGER CHECK (per_buyer_limit IS NULL OR per_buyer_limit > 0),
        stock_total INTEGER NOT NULL CHECK (stock_total >= 0),
        stock_synced INTEGER NOT NULL,
        synced_at REAL,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL
    );
    CREATE INDEX goods_seller ON goods (seller_id, id);
    CREATE INDEX goods_category ON goods (category, id);
    CREATE TABLE wishlist (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        user_id INTEGER NOT NULL REFERENCES users (id),
        goods_id INTEGER NOT NULL REFERENCES goods (id),
        quantity INTEGER NOT NULL CHECK (quantity > 0),
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        UNIQUE (user_id, goods_id)
    );
    -- orders
    CREATE TABLE orders (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        user_id INTEGER NOT NULL REFERENCES users (id),
        total_price INTEGER NOT NULL,
        address_enc BLOB NOT NULL,
        created_at REAL NOT NULL
    );
    CREATE INDEX orders_user ON orders (user_id, id);
    CREATE TABLE order_details (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        order_id INTEGER NOT NULL REFERENCES orders (id),
        user_id INTEGER NOT NULL,
        goods_id INTEGER NOT NULL REFERENCES goods (id),
        quantity INTEGER NOT NULL CHECK (quantity > 0),
        unit_price INTEGER NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('PAYMENT_PENDING', 'COMPLETED', 'CANCELED')),
        -- 1 once this item's quantity has been given back to stock: the guard that makes every
        -- release path (cancel, abort, expiry, return) happen at most once.
        stock_released INTEGER NOT NULL DEFAULT 0,
        return_status TEXT CHECK (return_status IN ('RETURN_IN_PROGRESS', 'RETURN_COMPLETED')),
        return_reason TEXT,
        return_requested_at REAL,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL
    );
    CREATE INDEX order_details_user ON order_details (user_id, id);
    CREATE INDEX order_details_goods ON order_details (goods_id, status);
    CREATE INDEX order_details_status ON order_details (status, created_at);
    -- What orders publish for the stock check: every item whose quantity is still taken from
    -- stock. Goods reads this view, never the order tables themselves.
    CREATE VIEW active_order_items AS
        SELECT goods_id, user_id, quantity FROM order_details WHERE stock_released = 0;
    CREATE TABLE shipping (
        order_detail_id INTEGER PRIMARY KEY REFERENCES order_details (id),
        status TEXT NOT NULL CHECK (status IN ('PENDING', 'IN_TRANSIT', 'DELIVERED', 'CANCELED')),
        status_at REAL NOT NULL
    );
    CREATE INDEX shipping_status ON shipping (status, status_at);
    CREATE TABLE idempotency_keys (
        user_id INTEGER NOT NULL,
        key TEXT NOT NULL,
        request_hash TEXT NOT NULL,
        status INTEGER NOT NULL,
        body TEXT NOT NULL,
        created_at REAL NOT NULL,
        PRIMARY KEY (user_id, key)
    );
    -- payments
    CREATE TABLE payments (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        order_detail_id INTEGER NOT NULL UNIQUE,
        order_id INTEGER NOT NULL,
        user_id INTEGER NOT NULL,
        amount INTEGER NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('PAYMENT_SCREEN_ENTERED', 'PAYMENT_IN_PROGRESS',
            'PAYMENT_COMPLETED', 'PAYMENT_ABORTED', 'REFUNDED')),
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL
    );
    -- the event bus
    CREATE TABLE outbox (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        event_id TEXT NOT NULL UNIQUE,
        type TEXT NOT NULL,
        payload TEXT NOT NULL,
        created_at REAL NOT NULL
    );
    CREATE TABLE deliveries (
        event_id TEXT NOT NULL,
        consumer TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('PENDING', 'DONE', 'DEAD')),
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at REAL NOT NULL,
        claimed_by TEXT,
        claimed_until REAL,
        last_error TEXT,
        updated_at REAL NOT NULL,
        PRIMARY KEY (event_id, consumer)
    );
    CREATE INDEX deliveries_due ON deliveries (status, next_attempt_at);
    CREATE TABLE handled_events (
        consumer TEXT NOT NULL,
        event_id TEXT NOT NULL,
        handled_at REAL NOT NULL,
        PRIMARY KEY (consumer, event_id)
    )
    """,
    # 2: one word per thing: an order holds order items (the API keeps `orderDetailId`).
    """
    ALTER TABLE order_details RENAME TO order_items;
    ALTER TABLE shipping RENAME COLUMN order_detail_id TO order_item_id;
    ALTER TABLE payments RENAME COLUMN order_detail_id TO order_item_id;
    DROP INDEX order_details_user;
    DROP INDEX order_details_goods;
    DROP INDEX order_details_status;
    CREATE INDEX order_items_user ON order_items (user_id, id);
    CREATE INDEX order_items_goods ON order_items (goods_id, status);
    CREATE INDEX order_items_status ON order_items (status, created_at);
    UPDATE outbox SET payload = replace(payload, '"order_detail_id"', '"order_item_id"')
    """,
    # 3: the processes and hosts serving the shop (their heartbeats), and shop-wide facts such
    # as the fingerprint of the keys every host must share.
    """
    CREATE TABLE hosts (
        host_id TEXT PRIMARY KEY,
        hostname TEXT NOT NULL,
        pid INTEGER NOT NULL,
        url TEXT,
        version TEXT NOT NULL,
        leader INTEGER NOT NULL DEFAULT 0,
        started_at REAL NOT NULL,
        seen_at REAL NOT NULL,
        stopped_at REAL
    );
    CREATE INDEX hosts_seen ON hosts (seen_at);
    CREATE TABLE shop_meta (
        name TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    -- Every scheduled run, where it ran and how it ended: shows that a shop's daily runs
    -- happen once however many hosts serve it.
    CREATE TABLE job_runs (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        name TEXT NOT NULL,
        host_id TEXT NOT NULL,
        started_at REAL NOT NULL,
        finished_at REAL NOT NULL,
        outcome TEXT NOT NULL CHECK (outcome IN ('ok', 'failed')),
        detail TEXT NOT NULL
    );
    CREATE INDEX job_runs_name ON job_runs (name, started_at)
    """,
    # 4: the waiting room's settings per goods (queue module). Its line, tickets and passes
    # live in Redis; these rows let a Redis that lost them put each room back.
    """
    CREATE TABLE waiting_rooms (
        goods_id INTEGER PRIMARY KEY REFERENCES goods (id),
        enabled INTEGER NOT NULL CHECK (enabled IN (0, 1)),
        admit_per_second INTEGER NOT NULL CHECK (admit_per_second > 0),
        pass_seconds INTEGER NOT NULL CHECK (pass_seconds > 0),
        updated_at REAL NOT NULL
    )
    """,
    # 5: fulfilment and password reset. orders: who shipped an item by hand, with which
    # carrier and tracking number. users: one-time password-reset tokens (hashes only).
    """
    ALTER TABLE shipping ADD COLUMN carrier TEXT;
    ALTER TABLE shipping ADD COLUMN tracking_number TEXT;
    ALTER TABLE shipping ADD COLUMN shipped_at REAL;
    CREATE TABLE password_resets (
        token_hash TEXT PRIMARY KEY,
        user_id INTEGER NOT NULL REFERENCES users (id),
        expires_at REAL NOT NULL,
        used_at REAL,
        created_at REAL NOT NULL
    );
    CREATE INDEX password_resets_user ON password_resets (user_id)
    """,
    # 6: payments through a hosted checkout. The shop's side: one checkout session per order
    # (the provider's paymentId) and, per payment, its session and when money was taken and given
    # back (the facts a refund goes by). The built-in test provider's side: what a remote
    # provider would keep about its checkouts and refunds.
    """
    CREATE TABLE checkout_sessions (
        payment_id TEXT PRIMARY KEY,
        order_id INTEGER NOT NULL UNIQUE,
        user_id INTEGER NOT NULL,
        amount INTEGER NOT NULL,
        provider TEXT NOT NULL,
        checkout_url TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('OPEN', 'PAID', 'FAILED')),
        expires_at REAL NOT NULL,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL
    );
    ALTER TABLE payments ADD COLUMN session_id TEXT;
    ALTER TABLE payments ADD COLUMN paid_at REAL;
    ALTER TABLE payments ADD COLUMN refunded_at REAL;
    CREATE INDEX payments_session ON payments (session_id);
    CREATE INDEX payments_order ON payments (order_id);
    CREATE TABLE provider_checkouts (
        id TEXT PRIMARY KEY,
        amount INTEGER NOT NULL,
        lines TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('OPEN', 'PAID', 'CANCELED')),
        expires_at REAL NOT NULL,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL
    );
    CREATE TABLE provider_refunds (
        idempotency_key TEXT PRIMARY KEY,
        checkout_id TEXT NOT NULL,
        amount INTEGER NOT NULL,
        created_at REAL NOT NULL
    )
    """,
    # 7: the mails sent for events (notifications): a retried delivery never mails twice.
    """
    CREATE TABLE mail_log (
        event_id TEXT NOT NULL,
        kind TEXT NOT NULL,
        sent_at REAL NOT NULL,
        PRIMARY KEY (event_id, kind)
    )
    """,
]
