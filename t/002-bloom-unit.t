# Unit tests of the Bloom filters' pure code (XXH64 test vectors, sizing,
# the bit layout shared with Redis, line splitting) and their measured
# false positive rates: t/unit/bloom_unit.c, compiled with the module's
# ngx_http_cache_guard_bloom.c against the nginx build tree's headers.
# The linker drops the functions that need a running nginx (--gc-sections).
use strict;
use warnings;
use File::Basename qw(dirname);
use Cwd qw(abs_path);

my $root = abs_path(dirname(__FILE__) . '/..');
my $build = $ENV{BUILD} || "$root/build/nginx";
my $bin = "$root/t/servroot-unit/bloom_unit_tests";

if (!-f "$build/objs/ngx_auto_config.h") {
    print "1..0 # SKIP no configured nginx tree at $build: run make first\n";
    exit 0;
}

mkdir "$root/t/servroot-unit";
my @inc = map { "-I$build/$_" }
          qw(src/core src/event src/event/modules src/os/unix objs src/http
             src/http/modules src/http/v2);
my @cmd = ('cc', '-Wall', '-Werror', '-O2', '-g', @inc,
           "-I$root/ngx_module", '-I/usr/include/luajit-2.1',
           '-ffunction-sections', '-fdata-sections', '-Wl,--gc-sections',
           '-o', $bin, "$root/t/unit/bloom_unit.c",
           "$root/ngx_module/ngx_http_cache_guard_bloom.c", '-lm');

if (system(@cmd) != 0) {
    print "1..1\nnot ok 1 - bloom unit tests compile\n";
    exit 1;
}

exec $bin or die "cannot run $bin: $!";
