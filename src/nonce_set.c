/* placeholder: nonce_set */
