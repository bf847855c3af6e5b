package Test::CacheGuard::HTTP;

# A raw-socket HTTP/1.1 client for the tests.  Every exchange goes through
# one engine that multiplexes non-blocking sockets with IO::Select in this
# process, so a single request and 1000 concurrent ones share the code.
#
# A response is a hashref:
#   status       the status code (0 when no response head was received)
#   status_line  "HTTP/1.1 200 OK"
#   headers      { lowercased-name => value }; a header sent several times
#                has its values joined with ", " (see header_list)
#   header_list  [ [Name => value], ... ] as received, in order
#   body         the body (chunked transfer-encoding decoded)
#   elapsed      seconds (float) from connect to the end of the response
#   error        only present when something went wrong (connection refused,
#                timeout, truncated body, bad response), with the reason
#
# The client sends "Connection: close" and, when the response says
# "Connection: close", waits for the server to close: nginx runs the log
# phase before closing, so the error log is complete when a request returns.

use strict;
use warnings;

use Exporter qw(import);
use IO::Select;
use IO::Socket::INET;
use Time::HiRes qw(time);

use Test::CacheGuard::Util qw(fd_limit);

our @EXPORT_OK = qw(
    http_request http_get http_concurrent build_request exchange
);

my $DEFAULT_TIMEOUT            = 10;
my $DEFAULT_CONCURRENT_TIMEOUT = 30;

# Normalise headers given as { Name => value | [values] }, as
# [ Name => value, ... ] or as [ "Name: value", ... ] into [ [Name, value] ].
sub _header_pairs {
    my ($headers) = @_;
    return () unless $headers;
    my @pairs;
    if (ref $headers eq 'HASH') {
        for my $name (sort keys %$headers) {
            my $value = $headers->{$name};
            push @pairs, map { [$name, $_] } ref $value ? @$value : $value;
        }
    } elsif (ref $headers eq 'ARRAY' && @$headers && $headers->[0] =~ /:/) {
        for my $line (@$headers) {
            my ($name, $value) = $line =~ /^\s*([^:\s]+)\s*:\s*(.*?)\s*$/
                or die "bad header line '$line'\n";
            push @pairs, [$name, $value];
        }
    } elsif (ref $headers eq 'ARRAY') {
        my @list = @$headers;
        push @pairs, [splice @list, 0, 2] while @list;
    } else {
        die "headers must be a hashref or an arrayref\n";
    }
    return @pairs;
}

# The bytes of one request.  Host (localhost) and Connection (close) are
# added unless given; Content-Length is added when there is a body.
sub build_request {
    my (%opt) = @_;
    my $method  = $opt{method} // 'GET';
    my $path    = $opt{path}   // '/';
    my $version = $opt{version} // 'HTTP/1.1';
    my $body    = $opt{body};
    my @headers = _header_pairs($opt{headers});
    my %given   = map { (lc $_->[0] => 1) } @headers;

    unshift @headers, ['Host', 'localhost'] unless $given{host};
    push @headers, ['Connection', $opt{connection} // 'close']
        unless $given{connection};
    if (defined $body) {
        utf8::encode($body) if utf8::is_utf8($body);
        push @headers, ['Content-Length', length $body]
            unless $given{'content-length'} || $given{'transfer-encoding'};
    }
    my $request = "$method $path $version\r\n";
    $request .= "$_->[0]: $_->[1]\r\n" for @headers;
    $request .= "\r\n";
    $request .= $body if defined $body;
    return $request;
}

# Try to parse one response at the start of $$buf.  Returns undef when
# more bytes are needed, else { response => {...}, consumed => N }.
sub _parse_response {
    my ($buf, $method, $eof) = @_;
    my $head_end = index $$buf, "\r\n\r\n";
    if ($head_end < 0) {
        return undef unless $eof;
        return _broken(length $$buf, length $$buf
            ? 'connection closed inside the response head'
            : 'connection closed without a response');
    }
    my ($status_line, @lines) = split /\r\n/, substr($$buf, 0, $head_end);
    my ($status) = $status_line =~ m{^HTTP/\d\.\d\s+(\d{3})}
        or return _broken(length $$buf, "bad status line '$status_line'");

    my (@header_list, %headers);
    for my $line (@lines) {
        my ($name, $value) = $line =~ /^([^:]+):\s*(.*?)\s*$/ or next;
        push @header_list, [$name, $value];
        my $key = lc $name;
        $headers{$key} = exists $headers{$key}
            ? "$headers{$key}, $value" : $value;
    }
    my %response = (
        status      => 0 + $status,
        status_line => $status_line,
        headers     => \%headers,
        header_list => \@header_list,
        body        => '',
    );

    my $pos = $head_end + 4;
    if ($method eq 'HEAD' || $status =~ /^(?:1\d\d|204|304)$/) {
        return { response => \%response, consumed => $pos };
    }
    if (($headers{'transfer-encoding'} // '') =~ /chunked/i) {
        my $body = '';
        while (1) {
            my $line_end = index $$buf, "\r\n", $pos;
            return _truncated(\%response, $buf, $eof) if $line_end < 0;
            my ($hex) = substr($$buf, $pos, $line_end - $pos)
                =~ /^([0-9a-fA-F]+)/
                or return _broken(length $$buf, 'bad chunk size line');
            my $size = hex $hex;
            $pos = $line_end + 2;
            if ($size == 0) {
                while (1) {    # trailer section, up to an empty line
                    my $end = index $$buf, "\r\n", $pos;
                    return _truncated(\%response, $buf, $eof) if $end < 0;
                    my $empty = $end == $pos;
                    $pos = $end + 2;
                    last if $empty;
                }
                last;
            }
            return _truncated(\%response, $buf, $eof)
                if length $$buf < $pos + $size + 2;
            $body .= substr $$buf, $pos, $size;
            $pos += $size + 2;
        }
        $response{body} = $body;
        return { response => \%response, consumed => $pos };
    }
    if (defined $headers{'content-length'}) {
        my $length = $headers{'content-length'};
        return _truncated(\%response, $buf, $eof)
            if length $$buf < $pos + $length;
        $response{body} = substr $$buf, $pos, $length;
        return { response => \%response, consumed => $pos + $length };
    }
    return undef unless $eof;    # body delimited by the connection close
    $response{body} = substr $$buf, $pos;
    return { response => \%response, consumed => length $$buf };
}

sub _truncated {
    my ($response, $buf, $eof) = @_;
    return undef unless $eof;
    $response->{error} = 'connection closed inside the response body';
    return { response => $response, consumed => length $$buf };
}

sub _broken {
    my ($consumed, $error) = @_;
    return { response => { status => 0, headers => {}, header_list => [],
                           body => '', error => $error },
             consumed => $consumed };
}

# Run exchanges concurrently.  Each spec: { port, data (request bytes),
# methods => [one method per expected response] }.  All must finish
# within $timeout seconds.  Returns one arrayref of responses per spec.
sub exchange {
    my ($specs, $timeout) = @_;
    local $SIG{PIPE} = 'IGNORE';
    my $deadline = time + $timeout;
    my (%conn_of, @conns);
    my $readers = IO::Select->new;
    my $writers = IO::Select->new;

    my $finish = sub {
        my ($conn, $error) = @_;
        my $responses = $conn->{responses};
        my $wanted    = @{$conn->{methods}};
        if ($conn->{eof} && @$responses < $wanted) {
            # At the end of the stream the parser always returns something.
            my $method = $conn->{methods}[@$responses];
            push @$responses,
                _parse_response(\$conn->{rbuf}, $method, 1)->{response};
        }
        while (@$responses < $wanted) {
            push @$responses, { status => 0, headers => {}, header_list => [],
                                body => '',
                                error => $error // 'connection closed before '
                                                 . 'this response' };
        }
        my $elapsed = time - $conn->{start};
        $_->{elapsed} //= $elapsed for @$responses;
        if (my $sock = delete $conn->{sock}) {
            $readers->remove($sock);
            $writers->remove($sock);
            delete $conn_of{fileno $sock};
            close $sock;
        }
    };

    for my $spec (@$specs) {
        my $conn = {
            port      => $spec->{port},
            methods   => [@{$spec->{methods}}],
            data      => $spec->{data},
            written   => 0,
            rbuf      => '',
            responses => [],
            start     => time,
        };
        push @conns, $conn;
        my $sock = IO::Socket::INET->new(
            PeerAddr => '127.0.0.1',
            PeerPort => $spec->{port},
            Proto    => 'tcp',
            Blocking => 0,
        );
        unless ($sock) {
            $finish->($conn, "cannot connect to 127.0.0.1:$spec->{port}: $!");
            next;
        }
        $conn->{sock} = $sock;
        $conn_of{fileno $sock} = $conn;
        $writers->add($sock);
        $readers->add($sock);
    }

    while (%conn_of) {
        my $left = $deadline - time;
        last if $left <= 0;
        my ($readable, $writable) = IO::Select->select(
            $readers, $writers->count ? $writers : undef, undef,
            $left < 0.5 ? $left : 0.5);
        for my $sock (@{$writable || []}) {
            my $fd = fileno $sock;
            my $conn = defined $fd && $conn_of{$fd} or next;
            my $n = syswrite $sock, $conn->{data}, 65536, $conn->{written};
            if (!defined $n) {
                next if $!{EAGAIN} || $!{EINTR};
                # The server may have answered and closed early: keep
                # reading, the read side reports what happened.
                $writers->remove($sock);
                next;
            }
            $conn->{written} += $n;
            $writers->remove($sock)
                if $conn->{written} >= length $conn->{data};
        }
        for my $sock (@{$readable || []}) {
            my $fd = fileno $sock;
            my $conn = defined $fd && $conn_of{$fd} or next;
            my $n = sysread $sock, my $chunk, 65536;
            if (!defined $n) {
                next if $!{EAGAIN} || $!{EINTR};
                $finish->($conn, "read from port $conn->{port} failed: $!");
                next;
            }
            if ($n == 0) {
                $conn->{eof} = 1;
                $finish->($conn);
                next;
            }
            $conn->{rbuf} .= $chunk;
            while (@{$conn->{responses}} < @{$conn->{methods}}) {
                my $method = $conn->{methods}[@{$conn->{responses}}];
                my $parsed = _parse_response(\$conn->{rbuf}, $method, 0)
                    or last;
                substr($conn->{rbuf}, 0, $parsed->{consumed}) = '';
                $parsed->{response}{elapsed} = time - $conn->{start};
                push @{$conn->{responses}}, $parsed->{response};
            }
            next if @{$conn->{responses}} < @{$conn->{methods}};
            # All responses are in; wait for the close the server announced
            # (its log phase is then over), else we are done.
            my $last = $conn->{responses}[-1];
            $finish->($conn)
                unless ($last->{headers}{connection} // '') =~ /close/i;
        }
    }

    for my $conn (grep { $_->{sock} } @conns) {
        my $complete = @{$conn->{responses}} >= @{$conn->{methods}};
        $finish->($conn, $complete ? undef : "timeout after ${timeout}s");
    }
    return [map { $_->{responses} } @conns];
}

sub _single_spec {
    my ($method, $path, %opt) = @_;
    return {
        port    => $opt{port} // $ENV{TEST_NGINX_SERVER_PORT},
        data    => build_request(%opt, method => $method, path => $path),
        methods => [$method],
    };
}

# http_request($method, $path, headers => ..., body => ..., port => ...,
#              timeout => seconds (10))
sub http_request {
    my ($method, $path, %opt) = @_;
    my $timeout = $opt{timeout} // $DEFAULT_TIMEOUT;
    return exchange([_single_spec($method, $path, %opt)], $timeout)->[0][0];
}

sub http_get {
    my ($path, %opt) = @_;
    return http_request('GET', $path, %opt);
}

# http_concurrent($n, $path_or_coderef, %opt): $n requests started at once.
# A coderef is called with the index (0 .. $n-1) and returns a path or a
# hashref { method, path, headers, body, port }; %opt gives the defaults
# (method, headers, body, port) and timeout (30 s, for the whole batch).
sub http_concurrent {
    my ($n, $what, %opt) = @_;
    my $needed = $n + 64;
    my $limit  = fd_limit();
    die "http_concurrent($n): the open files limit (ulimit -n) is $limit, "
      . "raise it to at least $needed\n" if $limit < $needed;
    my $timeout = delete $opt{timeout} // $DEFAULT_CONCURRENT_TIMEOUT;
    my @specs;
    for my $i (0 .. $n - 1) {
        my $item = ref $what eq 'CODE' ? $what->($i) : $what;
        my %req = ref $item eq 'HASH' ? (%opt, %$item) : (%opt, path => $item);
        my $method = delete $req{method} // 'GET';
        my $path   = delete $req{path};
        push @specs, _single_spec($method, $path, %req);
    }
    return [map { $_->[0] } @{exchange(\@specs, $timeout)}];
}

1;
