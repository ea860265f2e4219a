"""The waiting room's atomic steps, as Lua scripts: join, admit (with the opening shuffle), use.

Per goods (see ``miri.infra.keys``): the room hash holds ``enabled``, ``rate``, ``pass_s``, the
ranks given out (``tail``) and admitted from the front (``head``), the admission credit and the
time of the last admission run, ``shuffled`` once the opening shuffle ran, ``soldout``, and the
counters ``admitted``, ``used``, ``expired``, ``sold_tickets``. A ticket's place in line is its
``rank``; its position is ``rank - head``, so a position needs no per-ticket work as the line
moves. Scripts read the goods' opening time and live stock from the goods hash (read only).

Times come from the caller's clock (ARGV), so tests drive them with an injected clock. The
opening shuffle is seeded by the caller: a fixed seed gives a fixed order in tests.
"""

from __future__ import annotations

# Moves the pre-queue into the line in a random order, once, at the opening.
# Needs: room, pre, line (keys), tprefix, seed.
_OPEN_LINE = """
local function open_line(room, pre, line, tprefix, seed)
  if redis.call('HGET', room, 'shuffled') == '1' then return end
  local ids = redis.call('LRANGE', pre, 0, -1)
  math.randomseed(seed)
  for i = #ids, 2, -1 do
    local j = math.random(i)
    ids[i], ids[j] = ids[j], ids[i]
  end
  local tail = tonumber(redis.call('HGET', room, 'tail') or '0')
  for i = 1, #ids do redis.call('HSET', tprefix .. ids[i], 'rank', tail + i) end
  for i = 1, #ids, 1000 do
    redis.call('RPUSH', line, unpack(ids, i, math.min(i + 999, #ids)))
  end
  redis.call('HSET', room, 'tail', tail + #ids, 'shuffled', '1')
  redis.call('DEL', pre)
end

-- The opening time (epoch seconds) when ``now`` is before it, else nil.
local function before_open(goods, now)
  local open = redis.call('HGET', goods, 'open')
  if open and open ~= '' and now < tonumber(open) then return open end
  return nil
end
"""

# KEYS: room, pre, line, ticket, goods. ARGV: user, now, ticket id, seed, tprefix.
# Answers {'NEW'|'EXISTS'|'NO_ROOM'|'MISSING'}.
JOIN = (
    _OPEN_LINE
    + """
if redis.call('HGET', KEYS[1], 'enabled') ~= '1' then return {'NO_ROOM'} end
if redis.call('EXISTS', KEYS[4]) == 1 then return {'EXISTS'} end
if redis.call('EXISTS', KEYS[5]) == 0 then return {'MISSING'} end
local now = tonumber(ARGV[2])
-- Once the opening shuffle ran, nobody joins the pre-queue any more, even with a time read a
-- moment before the opening: they would stay behind it, never shuffled.
local pre = redis.call('HGET', KEYS[1], 'shuffled') ~= '1' and before_open(KEYS[5], now)
local arrival = redis.call('HINCRBY', KEYS[1], 'arrivals', 1)
local rank = 0
if pre then
  redis.call('RPUSH', KEYS[2], ARGV[1])
else
  open_line(KEYS[1], KEYS[2], KEYS[3], ARGV[5], tonumber(ARGV[4]))
  rank = redis.call('HINCRBY', KEYS[1], 'tail', 1)
  redis.call('RPUSH', KEYS[3], ARGV[1])
end
redis.call('HSET', KEYS[4], 'id', ARGV[3], 'user', ARGV[1], 'state', 'WAITING', 'rank', rank,
  'arrival', arrival, 'pre', pre and '1' or '0', 'joined', ARGV[2])
return {'NEW'}
"""
)

# One admission run for one room (the leader runs it a few times a second).
# KEYS: room, pre, line, passes, goods, pending. ARGV: now, seed, tprefix, secret, most per run,
# how long a used pass may wait for its reservation's answer.
# Sweeps passes that ran out, shuffles the pre-queue at the opening, marks the room sold out
# while live stock is 0, and admits min(credit, line, units not already promised): live stock
# minus passes held minus passes used by orders whose reservation has not answered yet (those
# units may still leave the stock; counting them twice for a moment only admits later).
# Answers {status, admitted now, expired now, live stock}.
ADMIT = (
    _OPEN_LINE
    + """
local room, pre, line, passes, goods, pending = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5],
  KEYS[6]
local now, tprefix = tonumber(ARGV[1]), ARGV[3]
local cfg = redis.call('HMGET', room, 'enabled', 'rate', 'pass_s', 'credit', 'last', 'soldout')
if cfg[1] ~= '1' then return {'NO_ROOM', 0, 0, 0} end
local stock = redis.call('HGET', goods, 'stock')
if not stock then return {'MISSING', 0, 0, 0} end
stock = tonumber(stock)
local expired = 0
local gone = redis.call('ZRANGEBYSCORE', passes, '-inf', now)
for _, user in ipairs(gone) do
  local t = tprefix .. user
  if redis.call('HGET', t, 'state') == 'ADMITTED' then
    redis.call('HSET', t, 'state', 'EXPIRED')
    expired = expired + 1
  end
end
if #gone > 0 then
  redis.call('ZREMRANGEBYSCORE', passes, '-inf', now)
  redis.call('HINCRBY', room, 'expired', expired)
end
local opens = before_open(goods, now)
if opens then  -- admission credit starts to build at the opening instant
  redis.call('HSET', room, 'last', opens, 'credit', 0)
  return {'BEFORE_OPEN', 0, expired, stock}
end
open_line(room, pre, line, tprefix, tonumber(ARGV[2]))
if stock <= 0 then
  if cfg[6] ~= '1' then redis.call('HSET', room, 'soldout', '1', 'soldout_at', ARGV[1]) end
  redis.call('HSET', room, 'last', ARGV[1], 'credit', 0)
  return {'SOLD_OUT', 0, expired, stock}
end
if cfg[6] == '1' then redis.call('HSET', room, 'soldout', '', 'soldout_at', '') end
local rate = tonumber(cfg[2])
local last = tonumber(cfg[5] or ARGV[1])
local credit = tonumber(cfg[4] or '0') + rate * math.max(now - last, 0)
if credit > rate then credit = rate end
local n = math.floor(credit + 1e-6)  -- times are floats: 0.2 s at 5/s is one buyer
redis.call('ZREMRANGEBYSCORE', pending, '-inf', now - tonumber(ARGV[6]))
local free = stock - redis.call('ZCARD', passes) - redis.call('ZCARD', pending)
if n > free then n = free end
if n > tonumber(ARGV[5]) then n = tonumber(ARGV[5]) end
local admitted = 0
if n > 0 then
  local users = redis.call('LPOP', line, n)
  if users then
    local exp = now + tonumber(cfg[3])
    for _, user in ipairs(users) do
      local token = redis.sha1hex(ARGV[4] .. ':' .. user)
      redis.call('HSET', tprefix .. user, 'state', 'ADMITTED', 'pass', token, 'exp', exp,
        'admitted', ARGV[1])
      redis.call('ZADD', passes, exp, user)
    end
    admitted = #users
    redis.call('HINCRBY', room, 'head', admitted)
    redis.call('HINCRBY', room, 'admitted', admitted)
  end
end
redis.call('HSET', room, 'credit', tostring(credit - admitted), 'last', ARGV[1])
return {'OK', admitted, expired, stock}
"""
)

# Uses the caller's passes for every goods of an order, all or none, before anything is
# reserved. KEYS: per goods: room, ticket, passes, pending. ARGV: now, user, then the offered
# tokens.
# Answers {'OK'} or {refusal, goods index (1-based)}: NO_TICKET, WAITING, USED, EXPIRED,
# NOT_YOURS (the token is not this buyer's pass), SOLD_OUT.
USE = """
local now = tonumber(ARGV[1])
local offered = {}
for i = 3, #ARGV do offered[ARGV[i]] = true end
for i = 1, #KEYS, 4 do
  local g = (i + 3) / 4
  local t = redis.call('HMGET', KEYS[i + 1], 'state', 'pass', 'exp')
  if not t[1] then return {'NO_TICKET', g} end
  local soldout = redis.call('HGET', KEYS[i], 'soldout') == '1'
  if soldout and (t[1] == 'WAITING' or t[1] == 'ADMITTED') then return {'SOLD_OUT', g} end
  if t[1] == 'ADMITTED' and tonumber(t[3]) <= now then return {'EXPIRED', g} end
  if t[1] ~= 'ADMITTED' then return {t[1], g} end
  if not offered[t[2]] then return {'NOT_YOURS', g} end
end
for i = 1, #KEYS, 4 do
  redis.call('HSET', KEYS[i + 1], 'state', 'USED', 'used_at', ARGV[1])
  redis.call('ZREM', KEYS[i + 2], ARGV[2])
  redis.call('ZADD', KEYS[i + 3], ARGV[1], ARGV[2])
  redis.call('HINCRBY', KEYS[i], 'used', 1)
end
return {'OK'}
"""

# An order that used a pass was then refused. For stock (SOLD_OUT) the ticket ends SOLD_OUT;
# for anything else (a limit, a fault) the buyer keeps the pass until it runs out.
# KEYS: room, ticket, passes, pending. ARGV: now, user, when the pass was used, outcome
# ('SOLD_OUT' or 'BACK'): only that use is undone.
GIVE_BACK = """
local t = redis.call('HMGET', KEYS[2], 'state', 'used_at', 'exp')
if t[1] ~= 'USED' or t[2] ~= ARGV[3] then return 0 end
redis.call('ZREM', KEYS[4], ARGV[2])
redis.call('HINCRBY', KEYS[1], 'used', -1)
if ARGV[4] == 'SOLD_OUT' then
  redis.call('HSET', KEYS[2], 'state', 'SOLD_OUT')
  redis.call('HINCRBY', KEYS[1], 'sold_tickets', 1)
  return 1
end
if tonumber(t[3]) <= tonumber(ARGV[1]) then
  redis.call('HSET', KEYS[2], 'state', 'EXPIRED')
  redis.call('HINCRBY', KEYS[1], 'expired', 1)
  return 1
end
redis.call('HSET', KEYS[2], 'state', 'ADMITTED')
redis.call('ZADD', KEYS[3], t[3], ARGV[2])
return 1
"""

# KEYS: room, rooms set; ARGV: goods id, enabled ('1' or '0'), rate, pass seconds.
# Settings only: the line, tickets and counters stay as they are.
CONFIGURE = """
redis.call('HSET', KEYS[1], 'enabled', ARGV[2], 'rate', ARGV[3], 'pass_s', ARGV[4])
if ARGV[2] == '1' then
  redis.call('SADD', KEYS[2], ARGV[1])
else
  redis.call('SREM', KEYS[2], ARGV[1])
end
return 1
"""

# The reservation of an order that used passes answered: its units have left the stock.
# KEYS: the pending set of each goods; ARGV: user.
RESERVED = """
for i = 1, #KEYS do redis.call('ZREM', KEYS[i], ARGV[1]) end
return 1
"""
