#!/usr/bin/perl
# The concurrent client of bench/stampede.sh: N clients, one request each,
# for one URL, from one process with non-blocking sockets (core Perl only).
#
#   perl bench/stampede.pl --path /k [--ref miss|first] [--timeout 60]
#                          [--raw FILE] PORT=COUNT [PORT=COUNT ...]
#
# All connections are opened first and each request is sent only when every
# connection is up, in one burst, so the requests reach nginx at the same
# moment (the clients of several ports are interleaved in that burst).  The
# requests are HTTP/1.1 with "Connection: close".  A client's completion
# time is taken with Time::HiRes when its whole response (Content-Length)
# is in, or at the close.
#
# Latencies are measured from a reference completion:
#   --ref miss   the filler: the response whose X-Guard header is MISS.
#                Groups: waiters on the filler's node ("same_node", split
#                into "same_worker" and "other_worker" by X-Pid) and the
#                clients of the ports that got no MISS ("cross_node").
#   --ref first  the first response to complete; group "others": the rest.
#
# Output on stdout, one "name=value" per line: clients, ok (status 200),
# errors, misses, burst_ms (how long sending the requests took), ref_ms (the
# reference's completion after the burst began), last_ms, tally, then for
# each group GROUP_n, GROUP_p50, GROUP_p99, GROUP_max in milliseconds
# (nearest-rank percentiles).  --raw writes one line per client: port,
# status, X-Guard, X-Pid, sent and done in ms after the burst began, error.

use strict;
use warnings;

use Getopt::Long;
use IO::Select;
use IO::Socket::INET;
use POSIX qw(ceil);
use Socket qw(SOL_SOCKET SO_ERROR);
use Time::HiRes qw(time);

my %opt = (ref => 'first', timeout => 60);
GetOptions(\%opt, 'path=s', 'ref=s', 'timeout=f', 'raw=s')
    && defined $opt{path} && $opt{ref} =~ /^(?:miss|first)$/ && @ARGV
    or die "usage: $0 --path PATH [--ref miss|first] [--timeout S] "
         . "[--raw FILE] PORT=COUNT ...\n";

$SIG{PIPE} = 'IGNORE';

my @targets = map {
    /^(\d+)=(\d+)$/ or die "bad target '$_' (PORT=COUNT)\n";
    { port => $1, count => $2 };
} @ARGV;

my $deadline = time + $opt{timeout};

# Interleave the ports, so that with two nodes neither gets its requests
# first.
my @clients;
for (my $i = 0; grep { $_->{count} > $i } @targets; $i++) {
    for my $t (grep { $_->{count} > $i } @targets) {
        push @clients, { port => $t->{port}, rbuf => '' };
    }
}

# 1. Open every connection.
my %client_of;    # fileno => client
my $connecting = IO::Select->new;
for my $c (@clients) {
    my $sock = IO::Socket::INET->new(
        PeerAddr => '127.0.0.1', PeerPort => $c->{port},
        Proto => 'tcp', Blocking => 0,
    );
    unless ($sock) {
        $c->{error} = "connect: $!";
        next;
    }
    $c->{sock} = $sock;
    $client_of{fileno $sock} = $c;
    $connecting->add($sock);
}

# 2. Wait until every connection is up.
while ($connecting->count && time < $deadline) {
    my @ready = $connecting->can_write($deadline - time);
    for my $sock (@ready) {
        $connecting->remove($sock);
        my $err = unpack 'i', getsockopt($sock, SOL_SOCKET, SO_ERROR);
        next unless $err;
        my $c = $client_of{fileno $sock};
        $c->{error} = 'connect: ' . ($! = $err);
        done($c);
    }
}
done($client_of{fileno $_}, 'connect: timeout') for $connecting->handles;

# 3. Send every request in one burst.  A request is far smaller than a
# socket buffer, so one write sends it.
my $t0 = time;
my $readers = IO::Select->new;
for my $c (grep { $_->{sock} } @clients) {
    my $req = "GET $opt{path} HTTP/1.1\r\nHost: 127.0.0.1:$c->{port}\r\n"
            . "Connection: close\r\n\r\n";
    $c->{sent} = time;
    my $n = syswrite $c->{sock}, $req;
    if (!defined $n || $n != length $req) {
        done($c, 'write: ' . (defined $n ? 'short' : $!));
        next;
    }
    $readers->add($c->{sock});
}
my $burst = time - $t0;

# 4. Read the responses; each client notes its completion time.
while ($readers->count) {
    my $left = $deadline - time;
    last if $left <= 0;
    for my $sock ($readers->can_read($left)) {
        my $c = $client_of{fileno $sock};
        my $n = sysread $sock, my $chunk, 65536;
        if (!defined $n) {
            next if $!{EAGAIN} || $!{EINTR};
            done($c, "read: $!");
            next;
        }
        if ($n == 0) {
            done($c, defined $c->{status} && !defined $c->{length}
                     ? undef : 'closed before the end of the response');
            next;
        }
        $c->{rbuf} .= $chunk;
        parse_head($c) unless defined $c->{status};
        done($c) if defined $c->{length}
                    && length $c->{rbuf} >= $c->{body_at} + $c->{length};
    }
}
done($client_of{fileno $_}, "timeout after $opt{timeout} s")
    for $readers->handles;

report();

# Status, X-Guard, X-Pid and where the body starts, once the head is in.
sub parse_head {
    my ($c) = @_;
    my $end = index $c->{rbuf}, "\r\n\r\n";
    return if $end < 0;
    my $head = substr $c->{rbuf}, 0, $end;
    ($c->{status}) = $head =~ m{^HTTP/\d\.\d (\d{3})};
    $c->{status} //= 0;
    ($c->{guard}) = $head =~ /^X-Guard:[ \t]*(\S*)/mi;
    ($c->{pid}) = $head =~ /^X-Pid:[ \t]*(\d+)/mi;
    ($c->{length}) = $head =~ /^Content-Length:[ \t]*(\d+)/mi;
    $c->{body_at} = $end + 4;
}

# The client is finished: note the time, close the socket.
sub done {
    my ($c, $error) = @_;
    $c->{done} = time;
    $c->{error} //= $error;
    my $sock = delete $c->{sock} or return;
    delete $client_of{fileno $sock};
    $readers->remove($sock) if $readers;
    close $sock;
}

sub ms { return sprintf '%.1f', 1000 * $_[0] }

# Nearest-rank percentiles of a list of seconds, in ms.
sub stats {
    my ($name, @values) = @_;
    my @s = sort { $a <=> $b } @values;
    my $rank = sub { $s[ceil($_[0] / 100 * @s) - 1] };
    return ("${name}_n=" . @s,
            map { "${name}_$_->[0]=" . (@s ? ms($rank->($_->[1])) : 'n/a') }
                [p50 => 50], [p99 => 99], [max => 100]);
}

sub report {
    my @ok = grep { !defined $_->{error} } @clients;
    my @miss = sort { $a->{done} <=> $b->{done} }
               grep { ($_->{guard} // '') eq 'MISS' } @ok;
    my ($ref) = $opt{ref} eq 'miss' ? @miss
                                    : sort { $a->{done} <=> $b->{done} } @ok;
    my %tally;
    $tally{join ' ', $_->{status} // 0, $_->{guard} // '-'}++ for @ok;
    my @lines = (
        'clients=' . @clients,
        'ok=' . grep({ $_->{status} == 200 } @ok),
        'errors=' . (@clients - @ok),
        'misses=' . @miss,
        'burst_ms=' . ms($burst),
        'ref_ms=' . ($ref ? ms($ref->{done} - $t0) : 'n/a'),
        'last_ms=' . (@ok ? ms((sort { $b <=> $a } map { $_->{done} } @ok)[0]
                               - $t0) : 'n/a'),
        'tally=' . join(', ', map { "$_ x$tally{$_}" } sort keys %tally),
    );
    my @others = $ref ? grep { $_ != $ref } @ok : ();
    my $wait = sub { map { $_->{done} - $ref->{done} } @_ };
    if ($opt{ref} eq 'first') {
        push @lines, stats('others', $wait->(@others));
    } else {
        my %missed = map { ($_->{port} => 1) } @miss;
        my @same = grep { $ref && $_->{port} == $ref->{port} } @others;
        my $pid = $ref ? $ref->{pid} // '' : '';
        push @lines,
            stats('same_node', $wait->(@same)),
            stats('same_worker',
                  $wait->(grep { ($_->{pid} // '') eq $pid } @same)),
            stats('other_worker',
                  $wait->(grep { ($_->{pid} // '') ne $pid } @same)),
            stats('cross_node',
                  $wait->(grep { !$missed{$_->{port}} } @others));
    }
    print "$_\n" for @lines;

    return unless defined $opt{raw};
    open my $fh, '>', $opt{raw} or die "cannot write $opt{raw}: $!\n";
    print $fh "# port\tstatus\tx_guard\tx_pid\tsent_ms\tdone_ms\terror\n";
    for my $c (@clients) {
        print $fh join("\t", $c->{port}, $c->{status} // 0, $c->{guard} // '-',
                       $c->{pid} // '-',
                       defined $c->{sent} ? ms($c->{sent} - $t0) : '-',
                       ms($c->{done} - $t0), $c->{error} // ''), "\n";
    }
    close $fh;
}
