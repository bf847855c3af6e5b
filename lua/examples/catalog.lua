-- Demo policy for /api/catalog: validation by hooks from the library, a
-- key of the URI and the arguments the origin reads (tracking arguments do
-- not split the cache; the demo API also honours ?status=, which must then
-- be in the key, or ?status=404 would be stored for every client), entries
-- kept 10 s per node.
local v = require "cache_guard.validate"
local key = require "cache_guard.key"

return {
  name = "catalog",
  key = key.uri_with_args({ "page", "sort", "status" }),
  validate = v.all(
    v.int_arg("page", { min = 1, max = 1000 }),
    v.one_of_arg("sort", { "name", "price" })
  ),
  ttl = 60,
  jitter = 0.1,
  stale = { while_revalidate = 30, if_error = 600 },
  l1 = { ttl = 10 },
}
