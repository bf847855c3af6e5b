# Unit tests of the module's pure C code: compiled against the nginx build
# tree's headers and run; the program prints TAP, which this script passes on.
use strict;
use warnings;
use File::Basename qw(dirname);
use Cwd qw(abs_path);

my $root = abs_path(dirname(__FILE__) . '/..');
my $build = $ENV{BUILD} || "$root/build/nginx";
my $bin = "$root/t/servroot-unit/unit_tests";

if (!-f "$build/objs/ngx_auto_config.h") {
    print "1..0 # SKIP no configured nginx tree at $build: run make first\n";
    exit 0;
}

mkdir "$root/t/servroot-unit";
my @inc = map { "-I$build/$_" }
          qw(src/core src/event src/event/modules src/os/unix objs src/http
             src/http/modules src/http/v2);
my @cmd = ('cc', '-Wall', '-Werror', '-O1', '-g', @inc,
           "-I$root/ngx_module", '-I/usr/include/luajit-2.1',
           '-o', $bin, "$root/t/unit/unit.c",
           "$root/ngx_module/ngx_http_cache_guard_codec.c");

if (system(@cmd) != 0) {
    print "1..1\nnot ok 1 - unit tests compile\n";
    exit 1;
}

exec $bin or die "cannot run $bin: $!";
