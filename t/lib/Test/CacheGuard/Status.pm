package Test::CacheGuard::Status;

# Readers of the module's JSON answers that the behaviour tests share: the
# admin API (breakers, Bloom filters) and the status page, each asked of
# the block's nginx (or another port) and decoded.  A reader that must get
# a 200 dies otherwise: in --- check that fails the block, in wait_for it
# counts as "not yet".

use strict;
use warnings;

use Exporter 'import';
use JSON::PP ();
use Test::CacheGuard ();    # its import plans the tests: call it by name

our @EXPORT = qw(json_of breaker bloom_info status_json);

# The decoded JSON body of response $r, or { http => status, body => body }
# when it is not JSON (so that every field a test reads is missing).
sub json_of {
    my ($r) = @_;
    return eval { JSON::PP::decode_json($r->{body}) }
        // { http => $r->{status}, body => $r->{body} };
}

sub _get_200 {
    my ($what, $r) = @_;
    die "$what: status $r->{status}: " . ($r->{body} // '')
        . ($r->{error} // '') . "\n" unless $r->{status} == 200;
    return JSON::PP::decode_json($r->{body});
}

# GET /admin/breaker/NAME (NAME 'redis' by default), or with $state
# ('open', 'closed', 'auto') POST ?state=$state; the breaker's JSON.
sub breaker {
    my ($name, $state) = @_;
    $name //= 'redis';
    my $r = defined $state
        ? Test::CacheGuard::http_request('POST',
                                         "/admin/breaker/$name?state=$state")
        : Test::CacheGuard::http_get("/admin/breaker/$name");
    return _get_200("breaker $name", $r);
}

# GET /admin/bloom/NAME (%opt as for http_get, e.g. port => ...).
sub bloom_info {
    my ($name, %opt) = @_;
    return _get_200("GET /admin/bloom/$name",
                    Test::CacheGuard::http_get("/admin/bloom/$name", %opt));
}

# GET /status: the status page's JSON.
sub status_json {
    return _get_200('GET /status', Test::CacheGuard::http_get('/status'));
}

1;
