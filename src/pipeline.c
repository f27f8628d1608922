/* placeholder: pipeline */
