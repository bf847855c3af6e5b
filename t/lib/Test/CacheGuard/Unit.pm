package Test::CacheGuard::Unit;

# Compiles a C unit-test program against the nginx build tree's headers
# (build/nginx, or $ENV{BUILD}) with the module sources it tests, and runs
# it in place of the calling .t file: the program prints TAP.

use strict;
use warnings;

use Exporter 'import';
use File::Basename qw(dirname);
use Cwd qw(abs_path);

our @EXPORT = qw(run_c_unit);

# run_c_unit($name, [sources relative to the repository], @extra_cc_args)
sub run_c_unit {
    my ($name, $sources, @extra) = @_;
    my $root = abs_path(dirname(__FILE__) . '/../../../..');
    my $build = $ENV{BUILD} || "$root/build/nginx";
    my $bin = "$root/t/servroot-unit/$name";

    if (!-f "$build/objs/ngx_auto_config.h") {
        print "1..0 # SKIP no configured nginx tree at $build: run make first\n";
        exit 0;
    }

    mkdir "$root/t/servroot-unit";
    my @inc = map { "-I$build/$_" }
              qw(src/core src/event src/event/modules src/os/unix objs
                 src/http src/http/modules src/http/v2);
    my @cmd = ('cc', '-Wall', '-Werror', '-O2', '-g', @inc,
               "-I$root/ngx_module", '-I/usr/include/luajit-2.1',
               '-o', $bin, map({ "$root/$_" } @$sources), @extra);

    if (system(@cmd) != 0) {
        print "1..1\nnot ok 1 - $name compiles\n";
        exit 1;
    }

    exec $bin or die "cannot run $bin: $!";
}

1;
