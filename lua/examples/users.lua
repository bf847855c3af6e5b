-- Demo policy for /api/users/ID: one Redis entry per user, five minutes,
-- spread by 20% so that entries filled together do not expire together.
return {
  name = "users",
  key = "$host$uri",
  ttl = 300,
  jitter = 0.2,
  negative_ttl = 30,
  negative_statuses = { 404, 410 },
  cache_statuses = { 200, 404, 410 },
  max_entry_size = "256k",
  l1 = { ttl = 5 },
}
