// The link is where @deut/wire's layouts meet @deut/crypto's primitives, which may not
// import each other: each field wire lays out must be as long as what crypto writes there.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { AEAD_TAG_BYTES, ELLIGATOR_BYTES, HEADER_MASK_BYTES, HEADER_SAMPLE_BYTES, MAC16_BYTES, X25519_KEY_BYTES, XCHACHA_NONCE_BYTES } from '@deut/crypto';
import {
  COOKIE_BYTES,
  COOKIE_REPLY_NONCE_BYTES,
  HANDSHAKE_MAC_BYTES,
  LINK_COUNTER_BYTES,
  LINK_SAMPLE_BYTES,
  PUBLIC_KEY_BYTES,
  REPRESENTATIVE_BYTES,
  TAG_BYTES,
} from '@deut/wire';

test('layout - every field @deut/wire lays out fits what @deut/crypto writes into it', () => {
  assert.equal(TAG_BYTES, AEAD_TAG_BYTES, 'AEAD and onion layer tags');
  assert.equal(PUBLIC_KEY_BYTES, X25519_KEY_BYTES, 'static and ephemeral keys');
  assert.equal(REPRESENTATIVE_BYTES, ELLIGATOR_BYTES, 'Elligator2 representatives');
  assert.equal(HANDSHAKE_MAC_BYTES, MAC16_BYTES, 'mac1 and mac2');
  assert.equal(COOKIE_BYTES, MAC16_BYTES, 'a cookie is a mac16');
  assert.equal(COOKIE_REPLY_NONCE_BYTES, XCHACHA_NONCE_BYTES, 'the cookie reply nonce');
  assert.equal(LINK_COUNTER_BYTES, HEADER_MASK_BYTES, 'header protection masks the whole counter');
  assert.equal(LINK_SAMPLE_BYTES, HEADER_SAMPLE_BYTES, 'the header-protection sample');
});
