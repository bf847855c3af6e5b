# Unit tests of the Bloom filters' pure code (XXH64 test vectors, sizing,
# the bit layout shared with Redis, line splitting) and their measured
# false positive rates: t/unit/bloom_unit.c with the module's
# ngx_http_cache_guard_sbbf.c and ngx_http_cache_guard_lines.c, which
# need no running nginx: no linker tricks.
use strict;
use warnings;
use lib 't/lib';
use Test::CacheGuard::Unit;

run_c_unit('bloom_unit_tests',
           ['t/unit/bloom_unit.c', 'ngx_module/ngx_http_cache_guard_sbbf.c',
            'ngx_module/ngx_http_cache_guard_lines.c'],
           '-lm');
