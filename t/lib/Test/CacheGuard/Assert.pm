package Test::CacheGuard::Assert;

# Small helpers the behaviour tests share: reading the X-Guard header
# (set by the tests' configs to "$cache_guard_status $cache_guard_level"),
# waiting for a fill's SET to land in Redis, time bounds and client counts
# that allow for valgrind, and what a fallback answer looks like.

use strict;
use warnings;

use Exporter 'import';
use List::Util qw(max);
use Test::CacheGuard ();    # its import plans the tests: call it by name

our @EXPORT = qw(slow clients stored guard tally max_elapsed body_n
                 is_fallback_body is_fallback);

# Time bounds are for a loaded 2-core machine; valgrind slows nginx down.
sub slow { return $ENV{TEST_NGINX_USE_VALGRIND} ? 5 : 1 }

# $n concurrent clients, a tenth of them under valgrind.
sub clients {
    my ($n) = @_;
    return $ENV{TEST_NGINX_USE_VALGRIND} ? $n / 10 : $n;
}

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

# The test origin's body counts the requests for its path: "n":N.
sub body_n { return ($_[0]{body} // '') =~ /"n":(\d+)/ ? $1 : -1 }

sub is_fallback_body {
    return $_[0] =~ /^\s*\{\s*"error"\s*:\s*"[^"]+"\s*\}\s*$/;
}

# One test: response $r is the policies' fallback of t/065 and t/066
# (503 FALLBACK, Retry-After: 5, a JSON error body).
sub is_fallback {
    my ($r, $what) = @_;
    my $ok = $r->{status} == 503 && guard($r) =~ /^FALLBACK\b/
        && ($r->{headers}{'retry-after'} // '') eq '5'
        && is_fallback_body($r->{body});
    Test::More::ok($ok, "$what: the fallback (503, Retry-After: 5, JSON error)")
        or Test::More::diag("$r->{status} '" . guard($r) . "' retry-after "
            . ($r->{headers}{'retry-after'} // '-') . " $r->{body}");
    return $ok;
}

1;
