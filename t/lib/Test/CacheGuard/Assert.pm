package Test::CacheGuard::Assert;

# Small helpers the behaviour tests share: reading the X-Guard header
# (set by the tests' configs to "$cache_guard_status $cache_guard_level"),
# waiting for a fill's SET to land in Redis, and time bounds that allow
# for valgrind.

use strict;
use warnings;

use Exporter 'import';
use List::Util qw(max);
use Test::CacheGuard ();    # its import plans the tests: call it by name

our @EXPORT = qw(slow stored guard tally max_elapsed is_fallback_body);

# Time bounds are for a loaded 2-core machine; valgrind slows nginx down.
sub slow { return $ENV{TEST_NGINX_USE_VALGRIND} ? 5 : 1 }

# The SET of a fill is sent after the response: wait for the key.
sub stored {
    my ($key) = @_;
    return Test::CacheGuard::wait_for(sub {
        Test::CacheGuard::redis('EXISTS', $key);
    }, 10, "key $key");
}

sub guard { return $_[0]{headers}{'x-guard'} // '' }

# "200 HIT l1 x199, 200 MISS x1": what a batch of responses were.
sub tally {
    my ($res) = @_;
    my %n;
    $n{join ' ', $_->{status}, guard($_) || '-'}++ for @$res;
    return join ', ', map { "$_ x$n{$_}" } sort keys %n;
}

sub max_elapsed { return max map { $_->{elapsed} } @{$_[0]} }

sub is_fallback_body {
    return $_[0] =~ /^\s*\{\s*"error"\s*:\s*"[^"]+"\s*\}\s*$/;
}

1;
