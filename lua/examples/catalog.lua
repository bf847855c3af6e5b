-- Demo policy for /api/catalog: the query string is part of the key, and
-- entries stay in this node's shared memory for at most ten seconds.
return {
  name = "catalog",
  key = "$host$uri?$args",
  ttl = 60,
  jitter = 0.1,
  l1 = { ttl = 10 },
}
