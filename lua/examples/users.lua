-- Demo policy for /api/users/ID (a regex location capturing the id):
-- declarative validation in C (no Lua per request), ids that cannot exist
-- refused by the "users" Bloom filter, one Redis entry per user for five
-- minutes spread by 20%, 404s remembered for 30 s, single flight and a
-- stale copy for bad days.
return {
  name = "users",
  -- everything the origin reads: the demo API honours ?status= and ?delay=,
  -- so "$host$uri" would store /api/users/9?status=404 for every client
  key = "$host$request_uri",
  validate = {
    uri = "^/api/users/[0-9]{1,9}$",
    methods = { "GET", "HEAD" },
    args = {
      delay = { type = "string", max = 4 },
      status = { type = "int", min = 200, max = 599 },
    },
  },
  bloom = { filter = "users", item = "$1", on_reject = 404 },
  ttl = 300,
  jitter = 0.2,
  negative_ttl = 30,
  negative_statuses = { 404, 410 },
  cache_statuses = { 200, 404, 410 },
  max_entry_size = "256k",
  lock = { ttl = 10, wait = 5, on_timeout = "stale" },
  stale = { while_revalidate = 30, if_error = 600 },
  l1 = { ttl = 5 },
}
