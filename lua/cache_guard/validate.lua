-- Validators for policies' validate hooks.  Each check takes the request
-- object and returns nil when the request is fine, or a status and a
-- message; all() runs several in order.
--
--   local v = require "cache_guard.validate"
--   return {
--     validate = v.all(
--       v.int_arg("id", { min = 1, max = 999999999, required = true }),
--       v.one_of_arg("sort", { "name", "date" }),
--       v.header_present("X-Api-Key", 401)
--     ),
--   }

local _M = { _VERSION = "0.1.0" }

local tonumber = tonumber
local type = type
local ipairs = ipairs
local select = select
local str_match = string.match
local str_format = string.format


local function bad(status, fmt, ...)
  return status or 400, str_format(fmt, ...)
end


-- A check of one query argument: absent is fine unless opts.required;
-- one that does not decode or is given twice is refused; test(v) returns
-- nil, or the reason the value is refused.
local function arg_check(name, opts, test)
  return function(r)
    local v, why = r:arg(name)
    if v == false then
      return bad(opts.status, "argument %q %s", name, why)
    end
    if v == nil then
      if opts.required then
        return bad(opts.status, "argument %q is required", name)
      end
      return nil
    end
    local reason = test(v)
    if reason then
      return bad(opts.status, "argument %q %s", name, reason)
    end
    return nil
  end
end


-- An integer query argument within [min, max].
function _M.int_arg(name, opts)
  opts = opts or {}
  local min, max = opts.min or -2^53, opts.max or 2^53
  return arg_check(name, opts, function(v)
    if not str_match(v, "^%-?%d+$") then
      return "must be an integer"
    end
    local n = tonumber(v)
    if n < min or n > max then
      return str_format("must be from %d to %d", min, max)
    end
  end)
end


-- A query argument whose value is one of a list.
function _M.one_of_arg(name, values, opts)
  opts = opts or {}
  local allowed = {}
  for _, v in ipairs(values) do
    allowed[v] = true
  end
  return arg_check(name, opts, function(v)
    if not allowed[v] then
      return "has an unknown value"
    end
  end)
end


-- A UUID in a query argument (8-4-4-4-12 hex digits).
function _M.uuid_arg(name, opts)
  opts = opts or {}
  local pattern = "^%x%x%x%x%x%x%x%x%-%x%x%x%x%-%x%x%x%x%-%x%x%x%x%-"
                  .. "%x%x%x%x%x%x%x%x%x%x%x%x$"
  return arg_check(name, opts, function(v)
    if not str_match(v, pattern) then
      return "must be a UUID"
    end
  end)
end


-- A request header that must be there (an API key, a tenant).
function _M.header_present(name, status)
  return function(r)
    if r:header(name) == nil then
      return bad(status or 400, "header %s is required", name)
    end
    return nil
  end
end


-- Runs checks in order; the first refusal wins.
function _M.all(...)
  local checks = { ... }
  local n = select("#", ...)
  for i = 1, n do
    if type(checks[i]) ~= "function" then
      error(str_format("cache_guard.validate.all: check %d is a %s, not a "
                       .. "function", i, type(checks[i])), 2)
    end
  end
  return function(r)
    for i = 1, n do
      local status, msg = checks[i](r)
      if status then
        return status, msg
      end
    end
    return nil
  end
end


return _M
