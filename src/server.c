/* placeholder: server */
