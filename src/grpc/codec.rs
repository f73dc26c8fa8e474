//! The protobuf codec of every service: tonic-prost's, with 256-byte starting buffers
//! instead of 8 KiB. Every open stream keeps its encode buffer for as long as it lives, so
//! the default made each idle event stream cost about 8 KiB more (1 KiB, about 0.5 KiB
//! more than this); buffers still grow whenever a message needs it.

use std::marker::PhantomData;
use tonic::codec::BufferSettings;
use tonic_prost::{ProstDecoder, ProstEncoder};

/// The codec named by `codec_path` in build.rs, for servers and clients alike.
#[derive(Debug, Clone, Copy)]
pub struct SmallBufferCodec<T, U>(PhantomData<(T, U)>);

impl<T, U> Default for SmallBufferCodec<T, U> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

fn settings() -> BufferSettings {
    BufferSettings::new(256, 32 * 1024)
}

impl<T, U> tonic::codec::Codec for SmallBufferCodec<T, U>
where
    T: prost::Message + Send + 'static,
    U: prost::Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = ProstDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstEncoder::new(settings())
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProstDecoder::new(settings())
    }
}
