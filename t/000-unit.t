# Unit tests of the module's pure C code (entry codec, CRC32C, jitter,
# Accept-Encoding classes, JSON escaping): t/unit/unit.c with the codec.
use strict;
use warnings;
use lib 't/lib';
use Test::CacheGuard::Unit;

run_c_unit('unit_tests', ['t/unit/unit.c',
                          'ngx_module/ngx_http_cache_guard_codec.c']);
