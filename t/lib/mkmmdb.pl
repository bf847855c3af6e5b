#!/usr/bin/perl
# Writes a small MaxMind DB for the geo tests.
#
#     perl t/lib/mkmmdb.pl [-4] OUT.mmdb
#
# The records have the GeoLite2-Country fields (country.iso_code,
# continent.code) and the GeoLite2-ASN ones (autonomous_system_number,
# autonomous_system_organization), which the module reads from one
# database:
#
#     10.1.0.0/16     XX  EU  AS64500 "Test Net A"
#     10.2.0.0/16     YY  AS  AS64501 "Test Net B"
#     192.0.2.0/24    ZZ  NA  (no ASN: a field the database lacks)
#     2001:db8::/32   XX  EU  AS64500 "Test Net A"  (not with -4)
#
# Any other address (127.0.0.1 among them) is not in the database.  The
# default is an IPv6 tree with IPv4 aliased into it, like MaxMind's own
# databases; -4 writes an IPv4-only tree.

use strict;
use warnings;

use MaxMind::DB::Writer::Tree;

my $ip_version = 6;
if (@ARGV && $ARGV[0] eq '-4') {
    $ip_version = 4;
    shift @ARGV;
}
die "usage: $0 [-4] OUT.mmdb\n" unless @ARGV == 1;
my ($out) = @ARGV;

my %types = (
    country                        => 'map',
    continent                      => 'map',
    iso_code                       => 'utf8_string',
    code                           => 'utf8_string',
    autonomous_system_number       => 'uint32',
    autonomous_system_organization => 'utf8_string',
);

my $tree = MaxMind::DB::Writer::Tree->new(
    ip_version            => $ip_version,
    record_size           => 24,
    database_type         => 'GeoLite2-Country',
    languages             => ['en'],
    description           => { en => 'nginx-cache-guard test data' },
    map_key_type_callback => sub { $types{ $_[0] } },
    alias_ipv6_to_ipv4    => $ip_version == 6 ? 1 : 0,

    # the test networks are private and documentation ranges, which the
    # writer leaves out by default
    remove_reserved_networks => 0,
);

my $net_a = {
    country                        => { iso_code => 'XX' },
    continent                      => { code     => 'EU' },
    autonomous_system_number       => 64500,
    autonomous_system_organization => 'Test Net A',
};

$tree->insert_network('10.1.0.0/16', $net_a);
$tree->insert_network('10.2.0.0/16', {
    country                        => { iso_code => 'YY' },
    continent                      => { code     => 'AS' },
    autonomous_system_number       => 64501,
    autonomous_system_organization => 'Test Net B',
});
$tree->insert_network('192.0.2.0/24', {
    country   => { iso_code => 'ZZ' },
    continent => { code     => 'NA' },
});
$tree->insert_network('2001:db8::/32', $net_a) if $ip_version == 6;

open my $fh, '>:raw', $out or die "$0: cannot write $out: $!\n";
$tree->write_tree($fh);
close $fh or die "$0: cannot write $out: $!\n";
