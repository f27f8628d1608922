/* placeholder: session */
