/* placeholder: error */
