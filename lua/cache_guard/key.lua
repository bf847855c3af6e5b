-- Key builders for policies' key hooks.
--
--   local key = require "cache_guard.key"
--   return { key = key.uri_with_args({ "id", "page" }) }

local _M = { _VERSION = "0.1.0" }

local ipairs = ipairs
local type = type
local tbl_concat = table.concat
local tbl_sort = table.sort
local str_format = string.format


-- The URI and only the named query arguments, in a fixed order, so that
-- tracking parameters and argument order do not split the cache.
function _M.uri_with_args(names)
  if type(names) ~= "table" then
    error("cache_guard.key.uri_with_args: a list of argument names "
          .. "is needed", 2)
  end
  local sorted = {}
  for i, name in ipairs(names) do
    sorted[i] = name
  end
  tbl_sort(sorted)
  return function(r)
    local parts = { r.host, r.uri }
    for _, name in ipairs(sorted) do
      local v = r:arg(name)
      if v == false then
        -- given twice or undecodable: the origin may read another value
        return nil
      end
      if v ~= nil then
        parts[#parts + 1] = name .. "=" .. v
      end
    end
    return tbl_concat(parts, "|")
  end
end


-- Adds a request header's value (a tenant, a locale) to another builder's
-- key; nil from the builder still bypasses the cache.
function _M.with_header(builder, header)
  return function(r)
    local k = builder(r)
    if k == nil then
      return nil
    end
    return str_format("%s|%s=%s", k, header, r:header(header) or "")
  end
end


return _M
