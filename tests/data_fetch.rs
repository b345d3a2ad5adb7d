//! `data fetch` against a tiny HTTP server on 127.0.0.1 serving a small fake CIFAR-10 archive:
//! an interrupted download resumes with a Range request, the archive is verified and unpacked
//! into a folder `data info` reads, and a wrong checksum is refused (and the download deleted).

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use ddr_fast::data::fetch::{fetch, FetchSpec, Resource, Unpack};
use md5::{Digest, Md5};

use common::cifar_records;

/// (path, Range header) of each request the server saw.
type RequestLog = Arc<Mutex<Vec<(String, Option<String>)>>>;

/// Serves `files` by path; supports `Range: bytes=N-`; the first GET of a path in `cut_once` is
/// cut off after half its body (an interrupted download). Returns the base URL and a log of
/// (path, range header) per request.
fn serve(files: HashMap<String, Vec<u8>>, cut_once: Vec<String>) -> (String, RequestLog) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let log = Arc::new(Mutex::new(Vec::new()));
    let log2 = log.clone();
    std::thread::spawn(move || {
        let mut cut = cut_once;
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            let mut r = BufReader::new(s.try_clone().unwrap());
            let mut line = String::new();
            if r.read_line(&mut line).is_err() {
                continue;
            }
            let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
            let mut range = None;
            loop {
                let mut h = String::new();
                if r.read_line(&mut h).is_err() || h.trim().is_empty() {
                    break;
                }
                if let Some((k, v)) = h.split_once(':') {
                    if k.eq_ignore_ascii_case("range") {
                        range = Some(v.trim().to_string());
                    }
                }
            }
            log2.lock().unwrap().push((path.clone(), range.clone()));
            let Some(body) = files.get(&path) else {
                let _ = s.write_all(
                    b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                );
                continue;
            };
            let start: usize = range
                .as_deref()
                .and_then(|r| r.strip_prefix("bytes="))
                .and_then(|r| r.trim_end_matches('-').parse().ok())
                .unwrap_or(0);
            if start >= body.len() && range.is_some() {
                let _ = s.write_all(b"HTTP/1.1 416 Range Not Satisfiable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                continue;
            }
            let rest = &body[start..];
            let head = if range.is_some() {
                format!(
                    "HTTP/1.1 206 Partial Content\r\nContent-Length: {}\r\nContent-Range: bytes {start}-{}/{}\r\nConnection: close\r\n\r\n",
                    rest.len(),
                    body.len() - 1,
                    body.len()
                )
            } else {
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    rest.len()
                )
            };
            let _ = s.write_all(head.as_bytes());
            if let Some(i) = cut.iter().position(|p| *p == path) {
                cut.remove(i);
                let _ = s.write_all(&rest[..rest.len() / 2]);
                let _ = s.shutdown(std::net::Shutdown::Both);
                continue;
            }
            let _ = s.write_all(rest);
        }
    });
    (base, log)
}

/// A .tar.gz holding cifar-10-batches-bin/ with 3 records per batch.
fn fake_cifar_archive() -> Vec<u8> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut tar = tar::Builder::new(gz);
    let names = [
        "data_batch_1.bin",
        "data_batch_2.bin",
        "data_batch_3.bin",
        "data_batch_4.bin",
        "data_batch_5.bin",
        "test_batch.bin",
    ];
    for name in names {
        let data = cifar_records(3, 1, 10);
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        tar.append_data(&mut h, format!("cifar-10-batches-bin/{name}"), &data[..])
            .unwrap();
    }
    tar.into_inner().unwrap().finish().unwrap()
}

fn md5_hex(b: &[u8]) -> String {
    Md5::digest(b).iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn interrupted_download_resumes_verifies_and_unpacks() {
    let archive = fake_cifar_archive();
    let path = "/cifar-10-binary.tar.gz".to_string();
    let (base, log) = serve(
        HashMap::from([(path.clone(), archive.clone())]),
        vec![path.clone()],
    );
    let spec = FetchSpec {
        dataset: "cifar10".into(),
        resources: vec![Resource {
            file: "cifar-10-binary.tar.gz".into(),
            url: format!("{base}{path}"),
            md5: md5_hex(&archive),
        }],
        unpack: Unpack::TarGz,
        result: "cifar-10-batches-bin".into(),
    };
    let tmp = tempfile::tempdir().unwrap();
    let err = fetch(&spec, tmp.path(), false)
        .expect_err("first try is cut off")
        .to_string();
    assert!(err.contains("run again to resume"), "{err}");
    let part = tmp.path().join("cifar-10-binary.tar.gz.part");
    assert_eq!(
        std::fs::metadata(&part).unwrap().len() as usize,
        archive.len() / 2
    );

    let out = fetch(&spec, tmp.path(), false).unwrap();
    let requests = log.lock().unwrap().clone();
    assert_eq!(requests.len(), 2);
    assert_eq!(
        requests[1].1.as_deref(),
        Some(format!("bytes={}-", archive.len() / 2).as_str()),
        "second request must resume"
    );
    assert!(!part.exists());
    let r = ddr_fast::data::load_real(&out).unwrap();
    assert_eq!((r.train.len(), r.test.len()), (15, 3));

    // The data folder as a whole is detected too (the archive's sub-folder is a known name).
    let bin = env!("CARGO_BIN_EXE_ddr-fast");
    let info = std::process::Command::new(bin)
        .args(["data", "info"])
        .arg(tmp.path())
        .output()
        .unwrap();
    assert!(
        info.status.success(),
        "{}",
        String::from_utf8_lossy(&info.stderr)
    );
}

#[test]
fn binary_refuses_an_archive_with_the_wrong_checksum() {
    // Served under the official name, but it is not the official archive: its MD5 cannot match.
    let archive = fake_cifar_archive();
    let (base, _) = serve(
        HashMap::from([("/cifar-10-binary.tar.gz".to_string(), archive)]),
        vec![],
    );
    let tmp = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ddr-fast"))
        .args(["data", "fetch", "cifar10", "--url-base", &base, "--dir"])
        .arg(tmp.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("checksum mismatch") && stderr.contains("c32a1d4ab5d03f1284b67883e8d87530"),
        "{stderr}"
    );
    assert!(!tmp.path().join("cifar-10-binary.tar.gz").exists());
    assert!(!tmp.path().join("cifar-10-binary.tar.gz.part").exists());
}

#[test]
fn unknown_dataset_and_http_errors_are_clear() {
    let err = ddr_fast::data::fetch::spec("imagenet", None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("known datasets"), "{err}");
    let (base, _) = serve(HashMap::new(), vec![]);
    let spec = ddr_fast::data::fetch::spec("fashion-mnist", Some(&base)).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let err = fetch(&spec, tmp.path(), false).unwrap_err().to_string();
    assert!(
        err.contains("HTTP 404") && err.contains("train-images-idx3-ubyte.gz"),
        "{err}"
    );
}

/// A zip with deflated entries (as the TinyImageNet archive has), written by hand: local headers,
/// central directory, end record.
fn deflated_zip(entries: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut central = Vec::new();
    for (name, data) in entries {
        let mut enc =
            flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(data).unwrap();
        let comp = enc.finish().unwrap();
        let mut crc = flate2::Crc::new();
        crc.update(data);
        let offset = out.len() as u32;
        let common = |v: &mut Vec<u8>| {
            v.extend(20u16.to_le_bytes()); // version needed
            v.extend(0u16.to_le_bytes()); // flags
            v.extend(8u16.to_le_bytes()); // deflate
            v.extend(0u32.to_le_bytes()); // time, date
            v.extend(crc.sum().to_le_bytes());
            v.extend((comp.len() as u32).to_le_bytes());
            v.extend((data.len() as u32).to_le_bytes());
            v.extend((name.len() as u16).to_le_bytes());
            v.extend(0u16.to_le_bytes()); // extra
        };
        out.extend(0x0403_4b50u32.to_le_bytes());
        common(&mut out);
        out.extend(name.as_bytes());
        out.extend(&comp);
        central.extend(0x0201_4b50u32.to_le_bytes());
        central.extend(20u16.to_le_bytes()); // version made by
        common(&mut central);
        central.extend([0u8; 10]); // comment len, disk, internal attr (2 each), external attr (4)
        central.extend(offset.to_le_bytes());
        central.extend(name.as_bytes());
    }
    let cd_offset = out.len() as u32;
    out.extend(&central);
    out.extend(0x0605_4b50u32.to_le_bytes());
    out.extend([0u8; 4]);
    out.extend((entries.len() as u16).to_le_bytes());
    out.extend((entries.len() as u16).to_le_bytes());
    out.extend((central.len() as u32).to_le_bytes());
    out.extend(cd_offset.to_le_bytes());
    out.extend(0u16.to_le_bytes());
    out
}

fn png_bytes(rgb: [u8; 3]) -> Vec<u8> {
    let mut b = Vec::new();
    image::RgbImage::from_pixel(8, 8, image::Rgb(rgb))
        .write_to(&mut std::io::Cursor::new(&mut b), image::ImageFormat::Png)
        .unwrap();
    b
}

#[test]
fn tinyimagenet_style_zip_unpacks_and_loads() {
    let archive = deflated_zip(&[
        ("tiny-imagenet-200/wnids.txt", b"n01\nn02\n".to_vec()),
        (
            "tiny-imagenet-200/train/n01/images/a.png",
            png_bytes([255, 0, 0]),
        ),
        (
            "tiny-imagenet-200/train/n02/images/b.png",
            png_bytes([0, 255, 0]),
        ),
        ("tiny-imagenet-200/val/images/v.png", png_bytes([0, 0, 255])),
        (
            "tiny-imagenet-200/val/val_annotations.txt",
            b"v.png\tn02\t0\t0\t8\t8\n".to_vec(),
        ),
    ]);
    let (base, _) = serve(
        HashMap::from([("/tiny-imagenet-200.zip".to_string(), archive.clone())]),
        vec![],
    );
    let mut spec = ddr_fast::data::fetch::spec("tinyimagenet", Some(&base)).unwrap();
    spec.resources[0].md5 = md5_hex(&archive); // the test archive is not the official one
    let tmp = tempfile::tempdir().unwrap();
    let out = fetch(&spec, tmp.path(), false).unwrap();
    let r = ddr_fast::data::load_real(&out).unwrap();
    assert_eq!(r.name, "tinyimagenet");
    assert_eq!((r.train.len(), r.test.len()), (2, 1));
    assert_eq!(r.test.labels, vec![1]);
    assert_eq!(r.test.image(0)[2 * 64], 1.0); // blue plane
}

#[test]
fn zip_entries_may_not_escape_the_target_folder() {
    let archive = deflated_zip(&[("../escaped.txt", b"x".to_vec())]);
    let (base, _) = serve(
        HashMap::from([("/tiny-imagenet-200.zip".to_string(), archive.clone())]),
        vec![],
    );
    let mut spec = ddr_fast::data::fetch::spec("tinyimagenet", Some(&base)).unwrap();
    spec.resources[0].md5 = md5_hex(&archive);
    let tmp = tempfile::tempdir().unwrap();
    let target = tmp.path().join("data");
    let err = fetch(&spec, &target, false).unwrap_err().to_string();
    assert!(err.contains("unsafe name"), "{err}");
    assert!(!tmp.path().join("escaped.txt").exists());
}
