#!/usr/bin/perl
# The test origin: an HTTP/1.1 server, single process and event driven
# (non-blocking sockets, one select loop), so it can hold 1000+ concurrent
# connections each with its own delay.  Keep-alive, pipelining, Content-Length
# and chunked request bodies are supported; responses carry Content-Length.
#
#   perl t/lib/origin.pl [--port 1985] [--host 127.0.0.1] [--quiet] [--log]
#                        [--parent-pid PID]
#
#   --quiet       no start-up line on stdout
#   --log         one plain line per request on stdout:
#                 "<epoch> <method> <target> -> <status> [delay <s>]"
#   --parent-pid  exit when that process is gone (used by the test harness)
#
# Behaviour of a request, from its query arguments (defaults in brackets),
# overridden by the per-path settings made with /_origin/set:
#   status=N [200]   delay=SECONDS [0] (float)   size=BYTES [0: natural body]
#   ct=TYPE [application/json]   hdr=Name:Value (repeatable; extra header)
#   close            close the connection without answering (after delay)
# Body: {"path":"/a","n":3,"status":200} where n is the number of requests
# this path received (query string excluded) since the last reset; with
# size=N exactly N bytes: that JSON padded with spaces (or cut to N bytes).
# HEAD, 204 and 304 responses have no body.
#
# Control API (requests under /_origin/ are not counted), text/plain:
#   /_origin/count?path=/a   requests received for /a
#   /_origin/total           requests received for all paths
#   /_origin/peak            most requests in flight at once since the reset
#   /_origin/inflight        requests received and not answered yet
#   /_origin/reset           forget counts, log, peak, overrides, last requests
#   /_origin/log             "<epoch> <method> <target>" per request, in order
#   /_origin/set?path=/a&status=500&delay=2&hdr=...
#                            sticky behaviour for /a (same names as above),
#                            replacing any earlier setting of /a
#   /_origin/clear?path=/a   remove the setting of /a
#   /_origin/last?path=/a    the last request for /a as received: request
#                            line, header lines, empty line, decoded body
#                            (404 if none)

use strict;
use warnings;

use Getopt::Long;
use IO::Select;
use IO::Socket::INET;
use POSIX qw(strftime);
use Time::HiRes qw(time);

my %opt = (port => $ENV{TEST_NGINX_ORIGIN_PORT} || 1985, host => '127.0.0.1');
GetOptions(\%opt, 'port=i', 'host=s', 'quiet', 'log', 'parent-pid=i')
    or die "usage: $0 [--port N] [--host ADDR] [--quiet] [--log] "
         . "[--parent-pid PID]\n";

$SIG{PIPE} = 'IGNORE';
$| = 1;

my $listener = IO::Socket::INET->new(
    LocalAddr => $opt{host},
    LocalPort => $opt{port},
    Listen    => 4096,
    ReuseAddr => 1,
    Proto     => 'tcp',
    Blocking  => 0,
) or die "origin: cannot listen on $opt{host}:$opt{port}: $@\n";

my %REASON = (
    200 => 'OK', 201 => 'Created', 204 => 'No Content',
    206 => 'Partial Content', 301 => 'Moved Permanently', 302 => 'Found',
    304 => 'Not Modified', 400 => 'Bad Request', 403 => 'Forbidden',
    404 => 'Not Found', 429 => 'Too Many Requests',
    500 => 'Internal Server Error', 502 => 'Bad Gateway',
    503 => 'Service Unavailable', 504 => 'Gateway Timeout',
);

# Statistics, reset by /_origin/reset.
my (%count, $total, $in_flight, $peak, @log, %override, %last_request);
$total = $in_flight = $peak = 0;

my %conns;      # fileno => connection
my %delayed;    # fileno => connection holding a delayed response
my $readers = IO::Select->new($listener);
my $writers = IO::Select->new;

print "origin: listening on $opt{host}:$opt{port}\n" unless $opt{quiet};

while (1) {
    exit 0 if $opt{'parent-pid'} && getppid() != $opt{'parent-pid'};
    my $timeout = 0.5;
    my $now = time;
    for my $conn (values %delayed) {
        my $left = $conn->{due} - $now;
        $timeout = $left if $left < $timeout;
    }
    $timeout = 0 if $timeout < 0;
    my ($readable, $writable) = IO::Select->select(
        $readers, $writers->count ? $writers : undef, undef, $timeout);
    for my $sock (@{$readable || []}) {
        if ($sock == $listener) {
            accept_all();
        } elsif (my $conn = conn_of($sock)) {
            on_readable($conn);
        }
    }
    for my $sock (@{$writable || []}) {
        my $conn = conn_of($sock) or next;
        on_writable($conn);
    }
    $now = time;
    for my $conn (grep { $_->{due} <= $now } values %delayed) {
        delete $delayed{fileno $conn->{sock}};
        answer($conn);
    }
}

# The connection of a socket reported by select, unless it was closed
# while handling an earlier event of the same round.
sub conn_of {
    my ($sock) = @_;
    my $fd = fileno $sock;
    return undef unless defined $fd;
    my $conn = $conns{$fd};
    return $conn && $conn->{sock} == $sock ? $conn : undef;
}

sub accept_all {
    while (my $sock = $listener->accept) {
        $sock->blocking(0);
        $conns{fileno $sock} = { sock => $sock, rbuf => '', wbuf => '' };
        $readers->add($sock);
    }
    warn "origin: accept failed: $! (raise ulimit -n?)\n"
        if $!{EMFILE} || $!{ENFILE};
}

sub close_conn {
    my ($conn) = @_;
    my $sock = $conn->{sock};
    my $fd = fileno $sock;
    if (delete $conn->{held}) {    # the client left before the answer
        $in_flight--;
    }
    delete $delayed{$fd};
    delete $conns{$fd};
    $readers->remove($sock);
    $writers->remove($sock);
    close $sock;
}

sub on_readable {
    my ($conn) = @_;
    my $n = sysread $conn->{sock}, my $chunk, 65536;
    if (!defined $n) {
        return if $!{EAGAIN} || $!{EINTR};
        close_conn($conn);
        return;
    }
    if ($n == 0) {
        close_conn($conn);
        return;
    }
    $conn->{rbuf} .= $chunk;
    next_request($conn);
}

sub on_writable {
    my ($conn) = @_;
    my $n = syswrite $conn->{sock}, $conn->{wbuf};
    if (!defined $n) {
        return if $!{EAGAIN} || $!{EINTR};
        close_conn($conn);
        return;
    }
    substr($conn->{wbuf}, 0, $n) = '';
    return if length $conn->{wbuf};
    $writers->remove($conn->{sock});
    close_conn($conn) if $conn->{close_after};
}

# Decode a chunked body starting at $pos; undef while incomplete.
sub decode_chunked {
    my ($buf, $pos) = @_;
    my $body = '';
    while (1) {
        my $line_end = index $$buf, "\r\n", $pos;
        return if $line_end < 0;
        my ($hex) = substr($$buf, $pos, $line_end - $pos) =~ /^([0-9a-fA-F]+)/
            or return (undef, -1);
        my $size = hex $hex;
        $pos = $line_end + 2;
        if ($size == 0) {
            while (1) {
                my $end = index $$buf, "\r\n", $pos;
                return if $end < 0;
                my $empty = $end == $pos;
                $pos = $end + 2;
                return ($body, $pos) if $empty;
            }
        }
        return if length $$buf < $pos + $size + 2;
        $body .= substr $$buf, $pos, $size;
        $pos += $size + 2;
    }
}

# Parse and handle the next complete request unless one is being held or
# the connection is closing.
sub next_request {
    my ($conn) = @_;
    return if $conn->{held} || $conn->{close_after};
    $conn->{rbuf} =~ s/\A(?:\r\n)+//;
    my $head_end = index $conn->{rbuf}, "\r\n\r\n";
    return if $head_end < 0;
    my $head = substr $conn->{rbuf}, 0, $head_end;
    my ($line, @header_lines) = split /\r\n/, $head;
    my ($method, $target, $version) =
        $line =~ m{^([A-Z]+)\s+(\S+)(?:\s+(HTTP/\d\.\d))?\s*$};
    unless ($method) {
        send_response($conn, 400, 'text/plain', [], "bad request line\n", 0);
        return;
    }
    $version //= 'HTTP/1.0';
    my %headers;
    for (@header_lines) {
        my ($name, $value) = /^([^:]+):\s*(.*?)\s*$/ or next;
        my $key = lc $name;
        $headers{$key} = exists $headers{$key} ? "$headers{$key}, $value"
                                               : $value;
    }

    my $body = '';
    my $consumed = $head_end + 4;
    if (($headers{'transfer-encoding'} // '') =~ /chunked/i) {
        my ($decoded, $end) = decode_chunked(\$conn->{rbuf}, $consumed);
        return unless defined $end;
        if ($end < 0) {
            send_response($conn, 400, 'text/plain', [], "bad chunk\n", 0);
            return;
        }
        ($body, $consumed) = ($decoded, $end);
    } elsif (my $length = $headers{'content-length'}) {
        return if length $conn->{rbuf} < $consumed + $length;
        $body = substr $conn->{rbuf}, $consumed, $length;
        $consumed += $length;
    }
    substr($conn->{rbuf}, 0, $consumed) = '';

    my $connection = $headers{connection} // '';
    my $keepalive = $version eq 'HTTP/1.1' ? $connection !~ /close/i
                                           : $connection =~ /keep-alive/i;
    my ($path, $query) = split /\?/, $target, 2;
    my $args = parse_query($query);

    if ($path =~ m{^/_origin/}) {
        my ($status, $text) = control($path, $args);
        send_response($conn, $status, 'text/plain', [], $text, $keepalive);
        return;
    }

    my $n = ++$count{$path};
    $total++;
    $in_flight++;
    $peak = $in_flight if $in_flight > $peak;
    push @log, sprintf('%.6f %s %s', time, $method, $target);
    $last_request{$path} = "$head\r\n\r\n$body";

    my $behaviour = behaviour($path, $args);
    $conn->{held} = {
        method    => $method,
        path      => $path,
        target    => $target,
        n         => $n,
        keepalive => $keepalive,
        behaviour => $behaviour,
    };
    if ($behaviour->{delay} > 0) {
        $conn->{due} = time + $behaviour->{delay};
        $delayed{fileno $conn->{sock}} = $conn;
    } else {
        answer($conn);
    }
}

# Send the response of the request the connection holds.
sub answer {
    my ($conn) = @_;
    my $request = delete $conn->{held};
    $in_flight--;
    my $b = $request->{behaviour};
    if ($opt{log}) {
        printf "%.3f %s %s -> %s%s\n", time, $request->{method},
            $request->{target}, $b->{close} ? 'close' : $b->{status},
            $b->{delay} > 0 ? " delay $b->{delay}" : '';
    }
    if ($b->{close}) {
        close_conn($conn);
        return;
    }
    my $json = sprintf '{"path":"%s","n":%d,"status":%d}',
        json_escape($request->{path}), $request->{n}, $b->{status};
    my $body = $json;
    if ($b->{size} > 0) {
        $body = length $json >= $b->{size}
            ? substr($json, 0, $b->{size})
            : $json . (' ' x ($b->{size} - length $json));
    }
    send_response($conn, $b->{status}, $b->{ct}, $b->{hdr}, $body,
        $request->{keepalive}, $request->{method} eq 'HEAD');
}

sub send_response {
    my ($conn, $status, $type, $extra_headers, $body, $keepalive, $is_head)
        = @_;
    my $reason = $REASON{$status} // 'Status';
    my $out = "HTTP/1.1 $status $reason\r\n"
            . 'Date: ' . strftime('%a, %d %b %Y %H:%M:%S GMT', gmtime) . "\r\n"
            . "Server: cache-guard-test-origin\r\n";
    my $bodyless = $status =~ /^(?:1\d\d|204|304)$/;
    unless ($bodyless) {
        $out .= "Content-Type: $type\r\n"
              . 'Content-Length: ' . length($body) . "\r\n";
    }
    $out .= 'Connection: ' . ($keepalive ? 'keep-alive' : 'close') . "\r\n";
    for my $header (@$extra_headers) {
        my ($name, $value) = split /:/, $header, 2;
        $out .= "$name: " . ($value // '') . "\r\n";
    }
    $out .= "\r\n";
    $out .= $body unless $bodyless || $is_head;

    $conn->{wbuf} .= $out;
    $conn->{close_after} = 1 unless $keepalive;
    $writers->add($conn->{sock});
    next_request($conn);    # a pipelined request may be waiting
}

sub parse_query {
    my ($query) = @_;
    my %args;
    for my $pair (split /&/, $query // '') {
        next unless length $pair;
        my ($name, $value) = split /=/, $pair, 2;
        push @{$args{url_decode($name)}}, url_decode($value // '');
    }
    return \%args;
}

sub url_decode {
    my ($s) = @_;
    $s =~ tr/+/ /;
    $s =~ s/%([0-9a-fA-F]{2})/chr hex $1/ge;
    return $s;
}

sub json_escape {
    my ($s) = @_;
    $s =~ s/(["\\])/\\$1/g;
    $s =~ s/([\x00-\x1f])/sprintf '\\u%04x', ord $1/ge;
    return $s;
}

# Defaults, then the query arguments, then the per-path override.
sub behaviour {
    my ($path, $args) = @_;
    my %b = (status => 200, delay => 0, size => 0,
             ct => 'application/json', hdr => [], close => 0);
    for my $source ($args, $override{$path} || {}) {
        for my $name (keys %b) {
            next unless exists $source->{$name};
            my @values = @{$source->{$name}};
            $b{$name} = $name eq 'hdr' ? [@values] : $values[-1];
        }
    }
    $b{status} = $b{status} =~ /^\d{3}$/ ? $b{status} : 200;
    $b{delay}  = $b{delay} =~ /^\d*\.?\d+$/ ? $b{delay} : 0;
    $b{size}   = $b{size} =~ /^\d+$/ ? $b{size} : 0;
    $b{close}  = $b{close} ne '0';
    return \%b;
}

sub control {
    my ($path, $args) = @_;
    my $target = exists $args->{path} ? $args->{path}[-1] : undef;
    if ($path eq '/_origin/count') {
        return (400, "path= is required\n") unless defined $target;
        return (200, ($count{$target} // 0) . "\n");
    }
    return (200, "$total\n")     if $path eq '/_origin/total';
    return (200, "$peak\n")      if $path eq '/_origin/peak';
    return (200, "$in_flight\n") if $path eq '/_origin/inflight';
    return (200, join '', map { "$_\n" } @log) if $path eq '/_origin/log';
    if ($path eq '/_origin/reset') {
        %count = ();
        %override = ();
        %last_request = ();
        @log = ();
        $total = 0;
        $peak = $in_flight;
        return (200, "ok\n");
    }
    if ($path eq '/_origin/set') {
        return (400, "path= is required\n") unless defined $target;
        my %settings = %$args;
        delete $settings{path};
        $override{$target} = \%settings;
        return (200, "ok\n");
    }
    if ($path eq '/_origin/clear') {
        return (400, "path= is required\n") unless defined $target;
        delete $override{$target};
        return (200, "ok\n");
    }
    if ($path eq '/_origin/last') {
        return (400, "path= is required\n") unless defined $target;
        return (404, "no request for $target\n")
            unless exists $last_request{$target};
        return (200, $last_request{$target});
    }
    return (404, "unknown control request $path\n");
}
