//! The protobuf wire types of `POST /recommend`, generated at build time from
//! `proto/recommend.proto` (prost + protox, see `build.rs`). The HTTP side (content negotiation,
//! conversion into the JSON request type) lives in `server::protobuf`.

/// Package `distilrec.v1`.
pub mod v1 {
    include!(concat!(env!("OUT_DIR"), "/distilrec.v1.rs"));
}

/// The encoded `FileDescriptorSet` of `recommend.proto` (no source info): what
/// `proto/recommend.desc` must contain, so clients can build the message classes without `protoc`.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/recommend.desc"));

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    /// The committed descriptor cannot drift from the .proto. After changing the .proto, rerun
    /// with `DISTILREC_BLESS_DESCRIPTOR=1` to rewrite it.
    #[test]
    fn committed_descriptor_matches_the_proto() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/proto/recommend.desc");
        if std::env::var("DISTILREC_BLESS_DESCRIPTOR").as_deref() == Ok("1") {
            std::fs::write(path, FILE_DESCRIPTOR_SET).unwrap();
        }
        let committed = std::fs::read(path).expect("proto/recommend.desc is committed");
        assert!(
            committed == FILE_DESCRIPTOR_SET,
            "proto/recommend.desc is stale: rerun this test with DISTILREC_BLESS_DESCRIPTOR=1"
        );
        let names = file_names(&committed);
        assert_eq!(names, vec!["recommend.proto".to_string()]);
    }

    /// File names in an encoded `FileDescriptorSet`, decoded with a two-field mirror of the
    /// descriptor messages (the library does not depend on prost-types).
    fn file_names(bytes: &[u8]) -> Vec<String> {
        #[derive(Clone, PartialEq, Message)]
        struct File {
            #[prost(string, optional, tag = "1")]
            name: Option<String>,
        }
        #[derive(Clone, PartialEq, Message)]
        struct Set {
            #[prost(message, repeated, tag = "1")]
            file: Vec<File>,
        }
        Set::decode(bytes)
            .expect("a valid FileDescriptorSet")
            .file
            .into_iter()
            .filter_map(|f| f.name)
            .collect()
    }

    #[test]
    fn presence_survives_the_wire() {
        let req = v1::RecommendRequest {
            history: Some(v1::History { items: vec![] }),
            k: Some(0),
            ..Default::default()
        };
        let back = v1::RecommendRequest::decode(req.encode_to_vec().as_slice()).unwrap();
        assert_eq!(back.history, Some(v1::History { items: vec![] }));
        assert_eq!(back.k, Some(0));
        assert_eq!(back.user_id, None);
    }
}
