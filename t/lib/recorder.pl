#!/usr/bin/perl
# A recording TCP listener for the tests: it accepts connections and
# appends every byte it receives, from any connection, to a file, so that
# a test can assert what did (or did not: a plain-text RESP command on a
# port that should only see TLS) reach the port.  Single process, one
# select loop, any number of clients; it never writes a byte.
#
#   perl t/lib/recorder.pl PORT MODE BYTES_FILE EVENTS_FILE PID_FILE
#                          [--parent-pid PID]
#
# BYTES_FILE: the bytes received, in the order they were read.
# EVENTS_FILE: one line per event: "CONNECT n", "READ n bytes",
# "CLOSE n peer|server total".
# PID_FILE gets the pid once the port listens.  SIGTERM or SIGINT: exit.
# --parent-pid: exit when that process is gone.
#
# MODE:
#   silent   keep each connection open and never answer (a server that
#            hangs); the peer closes it
#   close    close each connection as soon as it is accepted (reads what
#            already arrived first)
#   close-after-read  close a connection after its first read

use strict;
use warnings;

use Getopt::Long;
use IO::Select;
use IO::Socket::INET;

my %opt;
GetOptions(\%opt, 'parent-pid=i') && @ARGV == 5
    or die "usage: $0 PORT silent|close|close-after-read BYTES EVENTS PID "
         . "[--parent-pid PID]\n";
my ($port, $mode, $bytes_file, $events_file, $pid_file) = @ARGV;
die "unknown mode '$mode'\n"
    unless $mode =~ /^(?:silent|close|close-after-read)$/;

$SIG{PIPE} = 'IGNORE';
my $stop = 0;
$SIG{TERM} = $SIG{INT} = sub { $stop = 1 };

my $listener = IO::Socket::INET->new(
    LocalAddr => '127.0.0.1',
    LocalPort => $port,
    Listen    => 128,
    ReuseAddr => 1,
    Proto     => 'tcp',
) or die "recorder: cannot listen on 127.0.0.1:$port: $@\n";

open my $bytes, '>>:raw', $bytes_file or die "$bytes_file: $!\n";
open my $events, '>>', $events_file or die "$events_file: $!\n";
$_->autoflush(1) for $bytes, $events;

open my $pid_fh, '>', $pid_file or die "$pid_file: $!\n";
print {$pid_fh} "$$\n";
close $pid_fh;

my $select = IO::Select->new($listener);
my (%id, %total);
my $next = 0;

sub finish {
    my ($sock, $who) = @_;
    my $n = delete $id{$sock};
    print {$events} "CLOSE $n $who " . delete($total{$n}) . "\n";
    $select->remove($sock);
    close $sock;
    return;
}

# Read what is there; false when the peer closed.
sub take {
    my ($sock) = @_;
    my $got = sysread $sock, my $chunk, 65536;
    return 0 unless $got;
    my $n = $id{$sock};
    print {$bytes} $chunk;
    $total{$n} += $got;
    print {$events} "READ $n $got\n";
    return 1;
}

while (!$stop) {
    last if $opt{'parent-pid'} && getppid() != $opt{'parent-pid'};
    for my $sock ($select->can_read(0.2)) {
        if ($sock == $listener) {
            my $client = $listener->accept or next;
            my $n = ++$next;
            $id{$client} = $n;
            $total{$n} = 0;
            print {$events} "CONNECT $n\n";
            if ($mode eq 'close') {
                take($client) if IO::Select->new($client)->can_read(0);
                finish($client, 'server');
            } else {
                $select->add($client);
            }
            next;
        }
        if (!take($sock)) {
            finish($sock, 'peer');
        } elsif ($mode eq 'close-after-read') {
            finish($sock, 'server');
        }
    }
}
unlink $pid_file;
