//! What a simulated machine is: its firmware's DHCP options and timing, and how it fetches its
//! boot file.

use std::time::Duration;

/// How the boot file is fetched.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Fetch {
    /// TFTP, from the server the ACK names (option 66, else siaddr, else the server id); a
    /// boot file that is an `http://` URL is fetched over HTTP, as iPXE does.
    Tftp,
    /// HTTP: a URL as given (UEFI HTTP boot), a plain name from the next server.
    Http,
    /// DHCP only.
    None,
}

/// TFTP options a client asks for (`None`: not asked, plain RFC 1350).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct TftpOptions {
    /// blksize.
    pub blksize: Option<u16>,
    /// windowsize (RFC 7440).
    pub windowsize: Option<u16>,
    /// Ask for tsize.
    pub tsize: bool,
}

/// A kind of machine.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Profile {
    /// Name, for reports.
    pub name: String,
    /// Client architecture, option 93 (0 BIOS, 7 UEFI x64, 11 ARM64, 16 UEFI HTTP).
    pub arch: u16,
    /// Send option 97 (a UUID derived from the MAC).
    pub uuid: bool,
    /// Option 60.
    pub vendor_class: String,
    /// Option 77, if any ("iPXE" after a chainload).
    pub user_class: Option<String>,
    /// Waits before each retransmission of a DISCOVER or REQUEST; after the last, the client
    /// gives up. PXE ROMs: 4, 8, 16, 32 s.
    pub retransmit: Vec<Duration>,
    /// TFTP options.
    pub tftp: TftpOptions,
    /// Wait before a TFTP retransmission, and how many in a row before giving up.
    pub tftp_timeout: Duration,
    /// See above.
    pub tftp_retries: u32,
    /// How the boot file is fetched.
    pub fetch: Fetch,
    /// An HTTP download gives up after this long without data.
    pub http_timeout: Duration,
}

impl Profile {
    /// A profile by name: `pxe-bios`, `uefi-x64`, `uefi-arm64` (PXE ROMs: option 60
    /// "PXEClient:Arch:NNNNN:UNDI:003016", retransmissions after 4, 8, 16 and 32 s, TFTP with
    /// blksize 1468 and tsize, a TFTP retransmission after 4 s, 6 tries, as EDK2; the UEFI ones also
    /// windowsize 4, EDK2's PcdPxeTftpWindowSize),
    /// `uefi-http` (UEFI HTTP boot: architecture 16, vendor class "HTTPClient", the boot file is
    /// a URL fetched over HTTP) or `ipxe` (user class "iPXE", retransmissions
    /// after 1, 2, 3, 4, 8 s as iPXE's DHCP does, TFTP blksize 1432).
    pub fn named(name: &str) -> Option<Profile> {
        let pxe = |arch: u16| Profile {
            // EDK2 (UEFI) asks for windowsize 4; legacy BIOS ROMs run lockstep.
            name: name.to_string(),
            arch,
            uuid: true,
            vendor_class: format!("PXEClient:Arch:{arch:05}:UNDI:003016"),
            user_class: None,
            retransmit: [4, 8, 16, 32].map(Duration::from_secs).to_vec(),
            tftp: TftpOptions {
                blksize: Some(1468),
                windowsize: (arch != 0).then_some(4),
                tsize: true,
            },
            // EDK2's PXEBC_MTFTP_TIMEOUT and PXEBC_MTFTP_RETRIES.
            tftp_timeout: Duration::from_secs(4),
            tftp_retries: 6,
            fetch: Fetch::Tftp,
            http_timeout: Duration::from_secs(10),
        };
        Some(match name {
            "pxe-bios" => pxe(0),
            "uefi-x64" => pxe(7),
            "uefi-arm64" => pxe(11),
            "uefi-http" => Profile {
                vendor_class: "HTTPClient:Arch:00016:UNDI:003001".into(),
                fetch: Fetch::Http,
                ..pxe(16)
            },
            "ipxe" => Profile {
                user_class: Some("iPXE".into()),
                retransmit: [1, 2, 3, 4, 8].map(Duration::from_secs).to_vec(),
                tftp: TftpOptions {
                    blksize: Some(1432),
                    windowsize: None,
                    tsize: true,
                },
                // iPXE's TFTP backs off from a fraction of a second; 2 s, 5 tries is near.
                tftp_timeout: Duration::from_secs(2),
                tftp_retries: 5,
                ..pxe(7)
            },
            _ => return None,
        })
    }

    /// The names [`Profile::named`] knows.
    pub const NAMES: [&'static str; 5] =
        ["pxe-bios", "uefi-x64", "uefi-arm64", "uefi-http", "ipxe"];

    /// The same machine once its ROM has chainloaded iPXE: iPXE's DHCP (user class "iPXE", its
    /// retransmission schedule, the same architecture) and iPXE's fetch (TFTP, or HTTP for a
    /// URL).
    pub fn ipxe_after(&self) -> Profile {
        let mut p = Profile::named("ipxe").expect("the ipxe profile exists");
        p.name = format!("{} then ipxe", self.name);
        p.arch = self.arch;
        p.vendor_class = format!("PXEClient:Arch:{:05}:UNDI:003010", self.arch);
        p
    }
}
