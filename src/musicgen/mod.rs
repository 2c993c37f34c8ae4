//! Native MusicGen over tch: T5 text encoder, decoder with KV cache and classifier-free guidance,
//! EnCodec decoder, streaming decode. Pure compute: no gRPC, no resource bookkeeping.
